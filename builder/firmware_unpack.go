package builder

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ulikunitz/xz"
)

// Errors callers of BuildFirmware branch on.
var (
	// ErrSourceDigest: a source file's bytes do not match its pin.
	ErrSourceDigest = errors.New("source file does not match its pin")
	// ErrToolchain: a pinned toolchain package is missing or has another
	// version.
	ErrToolchain = errors.New("toolchain does not match the recipe")
	// ErrPlatform: the platform to build is not in the source tree.
	ErrPlatform = errors.New("platform not in the source package")
	// ErrOutputDigest: the build produced other bytes than the recipe pins.
	ErrOutputDigest = errors.New("built firmware does not match output_sha256")
)

// verifySources checks every pinned file in dir (size, then sha256) and
// reports all mismatches. Nothing is unpacked before this passes.
func verifySources(dir string, files []SourceFile) error {
	var errs []error
	for _, f := range files {
		if err := verifySourceFile(filepath.Join(dir, f.Name), f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func verifySourceFile(p string, f SourceFile) error {
	fh, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("source file %s: %w", f.Name, err)
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return fmt.Errorf("reading source file %s: %w", p, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != f.Size || got != f.SHA256 {
		return fmt.Errorf("%w: %s: got sha256 %s size %d, recipe pins sha256 %s size %d",
			ErrSourceDigest, p, got, n, f.SHA256, f.Size)
	}
	return nil
}

// checkDSC makes sure the verified .dsc describes the recipe's package and
// lists exactly the recipe's other files with the same digests.
func checkDSC(s *FirmwareSource, d *DebianSourceControl) error {
	var errs []error
	if d.Source != s.Package {
		errs = append(errs, fmt.Errorf("Source is %q, recipe says package %q", d.Source, s.Package))
	}
	if d.Version != s.Version {
		errs = append(errs, fmt.Errorf("Version is %q, recipe says version %q", d.Version, s.Version))
	}
	if d.Format != "3.0 (quilt)" {
		errs = append(errs, fmt.Errorf("Format is %q, only \"3.0 (quilt)\" is supported", d.Format))
	}
	pinned := map[string]SourceFile{}
	for _, f := range s.Files {
		if !strings.HasSuffix(f.Name, ".dsc") {
			pinned[f.Name] = f
		}
	}
	for _, f := range d.Files {
		p, ok := pinned[f.Name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("lists %s, which the recipe does not pin", f.Name))
		case p != f:
			errs = append(errs, fmt.Errorf("lists %s as sha256 %s size %d, recipe pins sha256 %s size %d", f.Name, f.SHA256, f.Size, p.SHA256, p.Size))
		}
		delete(pinned, f.Name)
	}
	for _, n := range slices.Sorted(func(yield func(string) bool) {
		for k := range pinned {
			if !yield(k) {
				return
			}
		}
	}) {
		errs = append(errs, fmt.Errorf("does not list %s, which the recipe pins", n))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", s.dscName(), err)
	}
	return nil
}

// sourceTarballs splits the .dsc's files into the orig tarball and the
// debian tarball (format 3.0 (quilt), without component tarballs).
func sourceTarballs(d *DebianSourceControl) (orig, debian string, err error) {
	for _, f := range d.Files {
		switch {
		case strings.Contains(f.Name, ".orig-"):
			return "", "", fmt.Errorf("%s: component tarball %s is not supported", d.Source, f.Name)
		case strings.Contains(f.Name, ".orig.tar."):
			orig = f.Name
		case strings.Contains(f.Name, ".debian.tar."):
			debian = f.Name
		case strings.HasSuffix(f.Name, ".asc"):
			// upstream signature: not needed to build
		default:
			return "", "", fmt.Errorf("%s: file %s is neither an orig nor a debian tarball", d.Source, f.Name)
		}
	}
	if orig == "" || debian == "" {
		return "", "", fmt.Errorf("%s: the .dsc needs one orig and one debian tarball", d.Source)
	}
	return orig, debian, nil
}

// extractTarball unpacks a .tar.xz or .tar.gz into dst (created if
// missing). With stripTop, every entry must sit below one top-level
// directory, which is removed (as dpkg-source does for orig tarballs).
// Extraction goes through an os.Root: no entry can leave dst. File modes
// are masked to 0755/0644 so the host umask and tarball owner never reach
// the build.
func extractTarball(ctx context.Context, src, dst string, stripTop bool) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader
	switch {
	case strings.HasSuffix(src, ".xz"):
		if r, err = xz.NewReader(bufio.NewReaderSize(f, 1<<20)); err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
	case strings.HasSuffix(src, ".gz"):
		if r, err = gzip.NewReader(f); err != nil {
			return fmt.Errorf("reading %s: %w", src, err)
		}
	default:
		return fmt.Errorf("%s: unsupported compression (want .xz or .gz)", src)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dst)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := extractTar(ctx, root, tar.NewReader(r), stripTop); err != nil {
		return fmt.Errorf("unpacking %s: %w", filepath.Base(src), err)
	}
	return nil
}

func extractTar(ctx context.Context, root *os.Root, tr *tar.Reader, stripTop bool) error {
	top := ""
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name, err := tarEntryPath(h.Name, stripTop, &top)
		if err != nil {
			return err
		}
		if name == "" {
			continue // the top-level directory itself
		}
		if err := extractEntry(root, tr, h, name); err != nil {
			return fmt.Errorf("entry %q: %w", h.Name, err)
		}
	}
}

// tarEntryPath cleans an entry name and removes the top-level directory.
func tarEntryPath(name string, stripTop bool, top *string) (string, error) {
	name = strings.TrimPrefix(name, "./")
	if name == "" || path.IsAbs(name) {
		return "", fmt.Errorf("entry %q: not a relative path", name)
	}
	clean := path.Clean(name)
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fmt.Errorf("entry %q: leaves the tree", name)
	}
	if !stripTop {
		return clean, nil
	}
	first, rest, _ := strings.Cut(clean, "/")
	if *top == "" {
		*top = first
	} else if first != *top {
		return "", fmt.Errorf("entry %q: outside the top-level directory %q", name, *top)
	}
	return rest, nil
}

func extractEntry(root *os.Root, tr *tar.Reader, h *tar.Header, name string) error {
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch h.Typeflag {
	case tar.TypeDir:
		return root.MkdirAll(name, 0o755)
	case tar.TypeReg:
		mode := fs.FileMode(0o644)
		if h.Mode&0o111 != 0 {
			mode = 0o755
		}
		w, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, tr); err != nil {
			w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return root.Chmod(name, mode) // the umask does not apply
	case tar.TypeSymlink:
		// Stored as is (edk2 has one absolute link, EmulatorPkg's
		// X11IncludeHack); later entries cannot be written through a
		// link that leaves the tree, the os.Root refuses that.
		return root.Symlink(h.Linkname, name)
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", h.Typeflag)
	}
}

// patchSeries is one entry of debian/patches/series.
type patchSeries struct {
	Name  string
	Strip string // patch -p argument, "1" unless the entry says otherwise
}

// parseSeries reads a quilt series file: one patch per line, optionally
// followed by -pN; '#' starts a comment.
func parseSeries(input string, b []byte) ([]patchSeries, error) {
	var out []patchSeries
	for i, l := range strings.Split(string(b), "\n") {
		if j := strings.IndexByte(l, '#'); j >= 0 {
			l = l[:j]
		}
		parts := strings.Fields(l)
		if len(parts) == 0 {
			continue
		}
		e := patchSeries{Name: parts[0], Strip: "1"}
		clean := path.Clean(e.Name)
		if path.IsAbs(e.Name) || clean != e.Name || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, fmt.Errorf("%s: line %d: %q is not a relative patch path", input, i+1, e.Name)
		}
		for _, opt := range parts[1:] {
			n, ok := strings.CutPrefix(opt, "-p")
			if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
				return nil, fmt.Errorf("%s: line %d: unsupported option %q (only -pN)", input, i+1, opt)
			}
			e.Strip = n
		}
		out = append(out, e)
	}
	return out, nil
}

// applyPatches applies debian/patches/series in order with the options
// dpkg-source uses for 3.0 (quilt) (no fuzz, no backups). It returns the
// applied patch names.
func applyPatches(ctx context.Context, tree string, env []string, log io.Writer) ([]string, error) {
	series, err := os.ReadFile(filepath.Join(tree, "debian/patches/series"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := parseSeries("debian/patches/series", series)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if err := applyPatch(ctx, tree, env, log, filepath.Join("debian/patches", e.Name), e.Strip); err != nil {
			return nil, err
		}
		names = append(names, e.Name)
	}
	return names, nil
}

// applyPatch runs patch with the options dpkg-source uses: no fuzz, no
// reversed patches, no backups, rejects discarded.
func applyPatch(ctx context.Context, tree string, env []string, log io.Writer, file, strip string) error {
	cmd := buildCmd(ctx, tree, env, log, "patch", "-s", "-t", "-F", "0", "-N", "-u", "-V", "never", "-E",
		"--no-backup-if-mismatch", "-r", "-", "-p"+strip, "-i", file)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("applying %s: %w", file, err)
	}
	return nil
}
