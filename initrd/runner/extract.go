package runner

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Extraction limits.
const (
	maxNameLen      = 4096 // PATH_MAX
	maxSymlinkHops  = 40   // Linux MAXSYMLINKS
	whiteoutPrefix  = ".wh."
	whiteoutOpaque  = ".wh..wh..opq"
	defaultMaxBytes = 1 << 30
)

// ErrRejected marks layer entries the extractor refused.
var ErrRejected = errors.New("layer entry rejected")

// Rejection is one refused layer entry.
type Rejection struct {
	Layer  int    // index of the layer in the manifest
	Entry  string // the tar entry name as found
	Reason string
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("layer %d: entry %q: %s", r.Layer, r.Entry, r.Reason)
}

func (r *Rejection) Unwrap() error { return ErrRejected }

// ExtractOptions limit what layers may contain.
type ExtractOptions struct {
	AllowSetuid bool  // keep setuid/setgid regular files (refused otherwise)
	MaxBytes    int64 // total bytes of regular files over all layers; 0 means 1 GiB
}

// Extractor applies image layers, in order, to a root directory through an
// os.Root, so no operation can leave the root even if this code is wrong.
// Paths inside the root are resolved component by component with symlinks
// (absolute ones too) interpreted relative to the root, as after chroot.
type Extractor struct {
	root    *os.Root
	opts    ExtractOptions
	written int64
	// created holds the root-relative paths created by the current layer,
	// which an opaque whiteout in the same layer must keep.
	created map[string]bool
}

// NewExtractor returns an extractor writing into root.
func NewExtractor(root *os.Root, opts ExtractOptions) *Extractor {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = defaultMaxBytes
	}
	return &Extractor{root: root, opts: opts}
}

// Layer applies one uncompressed layer tar. It applies every acceptable
// entry, and returns all rejections joined (each a *Rejection), or an I/O
// or archive error, which stops the layer.
func (x *Extractor) Layer(idx int, r io.Reader) error {
	x.created = map[string]bool{}
	tr := tar.NewReader(r)
	var errs []error
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("layer %d: reading tar: %w", idx, err))
			return errors.Join(errs...)
		}
		reason, err := x.entry(hdr, tr)
		if err != nil {
			errs = append(errs, fmt.Errorf("layer %d: entry %q: %w", idx, hdr.Name, err))
			return errors.Join(errs...)
		}
		if reason != "" {
			errs = append(errs, &Rejection{Layer: idx, Entry: hdr.Name, Reason: reason})
		}
	}
	return errors.Join(errs...)
}

// entry applies one tar entry. A non-empty reason rejects the entry; err
// is reserved for failures that stop the layer.
func (x *Extractor) entry(hdr *tar.Header, r io.Reader) (reason string, err error) {
	name, reason := cleanName(hdr.Name)
	if reason != "" || name == "" {
		return reason, nil
	}
	dir, base := path.Split(name)
	if base == whiteoutOpaque {
		return x.opaque(dir)
	}
	if w, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		return x.whiteout(dir, w)
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return "", nil
	case tar.TypeChar, tar.TypeBlock:
		return "device node refused", nil
	case tar.TypeFifo:
		return "fifo refused", nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink:
	default:
		return fmt.Sprintf("unsupported entry type %q", hdr.Typeflag), nil
	}
	if hdr.Typeflag == tar.TypeReg && hdr.Mode&(0o4000|0o2000) != 0 && !x.opts.AllowSetuid {
		return fmt.Sprintf("setuid/setgid file (mode %#o) refused (mkcvm.allow_setuid)", hdr.Mode), nil
	}
	if hdr.Typeflag == tar.TypeReg && (hdr.Size < 0 || hdr.Size > x.opts.MaxBytes-x.written) {
		return "", fmt.Errorf("%w: size %d exceeds the remaining extraction limit %d", ErrRejected, hdr.Size, x.opts.MaxBytes-x.written)
	}
	pdir, err := x.resolveDir(dir, true)
	if err != nil {
		return err.Error(), nil
	}
	target := path.Join(pdir, base)
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(target, hdr)
	case tar.TypeReg:
		return x.file(target, hdr, r)
	case tar.TypeSymlink:
		return x.symlink(name, target, hdr)
	default:
		return x.hardlink(target, hdr)
	}
}

// cleanName validates an entry name: relative, no "..", not too long. It
// returns the cleaned root-relative name ("" for the root itself).
func cleanName(n string) (string, string) {
	if len(n) > maxNameLen {
		return "", fmt.Sprintf("name longer than %d bytes", maxNameLen)
	}
	if strings.HasPrefix(n, "/") {
		return "", "absolute path refused"
	}
	var out []string
	for c := range strings.SplitSeq(n, "/") {
		switch c {
		case "", ".":
		case "..":
			return "", `".." path component refused`
		default:
			out = append(out, c)
		}
	}
	return strings.Join(out, "/"), ""
}

// resolveDir resolves a root-relative directory path, following symlinks
// inside the root: an absolute target restarts at the root and ".." stops
// at the root. Missing components are created (0755) when create is set.
func (x *Extractor) resolveDir(p string, create bool) (string, error) {
	comps := strings.Split(p, "/")
	var cur []string
	hops := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := path.Join(append(cur, c)...)
		fi, err := x.root.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist) && create:
			if err := x.root.Mkdir(next, 0o755); err != nil {
				return "", err
			}
			x.created[next] = true
			cur = append(cur, c)
		case err != nil:
			return "", err
		case fi.Mode()&fs.ModeSymlink != 0:
			if hops++; hops > maxSymlinkHops {
				return "", fmt.Errorf("too many symlinks resolving %q", p)
			}
			t, err := x.root.Readlink(next)
			if err != nil {
				return "", err
			}
			if path.IsAbs(t) {
				cur = nil
			}
			comps = append(strings.Split(t, "/"), comps...)
		case fi.IsDir():
			cur = append(cur, c)
		default:
			return "", fmt.Errorf("parent %q is not a directory", next)
		}
	}
	if len(cur) == 0 {
		return ".", nil
	}
	return path.Join(cur...), nil
}

// clear removes whatever is at target unless it is a directory and keep
// directories is set.
func (x *Extractor) clear(target string, keepDir bool) error {
	fi, err := x.root.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() && keepDir {
		return nil
	}
	return x.root.RemoveAll(target)
}

func (x *Extractor) dir(target string, hdr *tar.Header) (string, error) {
	if target == "." {
		return "", x.attrs(target, hdr)
	}
	if err := x.clear(target, true); err != nil {
		return "", err
	}
	if err := x.root.Mkdir(target, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	x.created[target] = true
	return "", x.attrs(target, hdr)
}

func (x *Extractor) file(target string, hdr *tar.Header, r io.Reader) (string, error) {
	if err := x.clear(target, false); err != nil {
		return "", err
	}
	f, err := x.root.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	n, err := io.Copy(f, io.LimitReader(r, hdr.Size))
	x.written += n
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != hdr.Size {
		err = fmt.Errorf("short file: %d of %d bytes", n, hdr.Size)
	}
	if err != nil {
		return "", err
	}
	x.created[target] = true
	return "", x.attrs(target, hdr)
}

func (x *Extractor) attrs(target string, hdr *tar.Header) error {
	if err := x.root.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	// Chmod after chown: chown clears setuid bits.
	if err := x.root.Chmod(target, fs.FileMode(hdr.Mode&0o777)|modeBits(hdr.Mode)); err != nil {
		return err
	}
	return x.root.Chtimes(target, hdr.ModTime, hdr.ModTime)
}

func modeBits(m int64) fs.FileMode {
	var fm fs.FileMode
	if m&0o4000 != 0 {
		fm |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		fm |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

func (x *Extractor) symlink(name, target string, hdr *tar.Header) (string, error) {
	t := hdr.Linkname
	if t == "" || len(t) > maxNameLen {
		return "symlink target empty or too long", nil
	}
	if !path.IsAbs(t) && escapes(path.Dir(name), t) {
		return fmt.Sprintf("symlink target %q escapes the root", t), nil
	}
	if err := x.clear(target, false); err != nil {
		return "", err
	}
	if err := x.root.Symlink(t, target); err != nil {
		return "", err
	}
	x.created[target] = true
	return "", x.root.Lchown(target, hdr.Uid, hdr.Gid)
}

// escapes reports whether relative link target t, found in directory dir,
// climbs above the root.
func escapes(dir, t string) bool {
	depth := 0
	for c := range strings.SplitSeq(dir+"/"+t, "/") {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

func (x *Extractor) hardlink(target string, hdr *tar.Header) (string, error) {
	old, reason := cleanName(hdr.Linkname)
	if reason != "" {
		return "hard link target: " + reason, nil
	}
	if old == "" {
		return "hard link to the root refused", nil
	}
	od, ob := path.Split(old)
	odir, err := x.resolveDir(od, false)
	if err != nil {
		return "hard link target: " + err.Error(), nil
	}
	old = path.Join(odir, ob)
	fi, err := x.root.Lstat(old)
	if err != nil {
		return fmt.Sprintf("hard link target %q: %v", hdr.Linkname, err), nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("hard link target %q is not a regular file", hdr.Linkname), nil
	}
	if old == target {
		return "", nil
	}
	if err := x.clear(target, false); err != nil {
		return "", err
	}
	if err := x.root.Link(old, target); err != nil {
		return "", err
	}
	x.created[target] = true
	return "", nil
}

// whiteout removes name from a lower layer (OCI image spec, layer.md,
// "Whiteouts").
func (x *Extractor) whiteout(dir, name string) (string, error) {
	if name == "" || name == "." || name == ".." {
		return fmt.Sprintf("whiteout of %q refused", name), nil
	}
	d, err := x.resolveDir(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return err.Error(), nil
	}
	return "", x.root.RemoveAll(path.Join(d, name))
}

// opaque removes the children of dir that lower layers created.
func (x *Extractor) opaque(dir string) (string, error) {
	d, err := x.resolveDir(dir, true)
	if err != nil {
		return err.Error(), nil
	}
	f, err := x.root.Open(d)
	if err != nil {
		return "", err
	}
	ents, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		p := path.Join(d, e.Name())
		if !x.created[p] {
			if err := x.root.RemoveAll(p); err != nil {
				return "", err
			}
		}
	}
	return "", nil
}
