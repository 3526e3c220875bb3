package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ArchiveError is a malformed .deb (ar) archive or package member: Input
// names the file, Offset the byte offset of the offending field.
type ArchiveError struct {
	Input  string
	Offset int64
	Field  string
	Reason string
	Err    error
}

var _ error = (*ArchiveError)(nil)

func (e *ArchiveError) Error() string {
	s := fmt.Sprintf("%s: offset 0x%x: %s: %s", e.Input, e.Offset, e.Field, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ArchiveError) Unwrap() error { return e.Err }

// The common ar format used by Debian packages (deb(5), ar(5)): the global
// magic, then per member a 60-byte header of fixed-width ASCII fields and
// the data padded to an even length.
const (
	arMagic        = "!<arch>\n"
	sizeofArHeader = 60
	arNameLen      = 16
	arSizeOffset   = 48
	arSizeLen      = 10
	arFmagOffset   = 58
	arFmag         = "`\n"
)

// ArMember is one member of an ar archive.
type ArMember struct {
	Name   string
	Offset int64 // offset of the member's data
	Data   []byte
}

// ParseAr splits an ar archive (a .deb) into its members. Data slices
// alias b.
func ParseAr(input string, b []byte) ([]ArMember, error) {
	if !bytes.HasPrefix(b, []byte(arMagic)) {
		return nil, &ArchiveError{Input: input, Field: "ar magic", Reason: fmt.Sprintf("%q, want %q", b[:min(len(b), len(arMagic))], arMagic)}
	}
	var out []ArMember
	off := len(arMagic)
	for off < len(b) {
		if len(b)-off < sizeofArHeader {
			return nil, &ArchiveError{Input: input, Offset: int64(off), Field: "ar header", Reason: fmt.Sprintf("%d bytes left, need %d", len(b)-off, sizeofArHeader)}
		}
		h := b[off : off+sizeofArHeader]
		if string(h[arFmagOffset:]) != arFmag {
			return nil, &ArchiveError{Input: input, Offset: int64(off + arFmagOffset), Field: "ar_fmag", Reason: fmt.Sprintf("%q, want %q", h[arFmagOffset:], arFmag)}
		}
		sizeStr := strings.TrimRight(string(h[arSizeOffset:arSizeOffset+arSizeLen]), " ")
		size, err := strconv.ParseUint(sizeStr, 10, 63)
		start := off + sizeofArHeader
		if err != nil || size > uint64(len(b)-start) {
			return nil, &ArchiveError{Input: input, Offset: int64(off + arSizeOffset), Field: "ar_size", Reason: fmt.Sprintf("%q: not a size within the %d bytes left", sizeStr, len(b)-start)}
		}
		name := strings.TrimSuffix(strings.TrimRight(string(h[:arNameLen]), " "), "/")
		out = append(out, ArMember{Name: name, Offset: int64(start), Data: b[start : start+int(size)]})
		off = start + int(size) + int(size%2)
	}
	return out, nil
}

// maxMember caps the size of one extracted package member.
const maxMember = 1 << 30

// debMembers extracts the named regular files (paths as in the recipe,
// without a leading "./") from the data archive of a .deb.
func debMembers(input string, deb []byte, want []string) (map[string][]byte, error) {
	ms, err := ParseAr(input, deb)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if !strings.HasPrefix(m.Name, "data.tar") {
			continue
		}
		r, err := decompressor(m.Name, m.Data)
		if err != nil {
			return nil, &ArchiveError{Input: input, Offset: m.Offset, Field: m.Name, Reason: "unreadable", Err: err}
		}
		return tarMembers(input+"!"+m.Name, r, want)
	}
	return nil, &ArchiveError{Input: input, Offset: int64(len(arMagic)), Field: "data.tar", Reason: "no data.tar.* member"}
}

func decompressor(name string, b []byte) (io.Reader, error) {
	br := bytes.NewReader(b)
	switch path.Ext(name) {
	case ".xz":
		return xz.NewReader(br)
	case ".zst":
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case ".gz":
		return gzip.NewReader(br)
	case ".tar":
		return br, nil
	}
	return nil, fmt.Errorf("unsupported compression %q (want xz, zst, gz or none)", path.Ext(name))
}

// ErrNoMember means a wanted path is not in a package or image.
var ErrNoMember = errors.New("no such member")

func tarMembers(input string, r io.Reader, want []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[strings.TrimPrefix(w, "./")] = true
	}
	tr := tar.NewReader(r)
	for len(out) < len(wanted) {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: reading tar: %w", input, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+h.Name), "/")
		if !wanted[name] {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s: %q is not a regular file (tar type %q, link %q)", input, name, h.Typeflag, h.Linkname)
		}
		if h.Size > maxMember {
			return nil, fmt.Errorf("%s: %q: %d bytes exceeds the limit of %d", input, name, h.Size, maxMember)
		}
		var b bytes.Buffer
		if _, err := io.Copy(&b, tr); err != nil {
			return nil, fmt.Errorf("%s: reading %q: %w", input, name, err)
		}
		out[name] = b.Bytes()
	}
	for _, w := range want {
		if _, ok := out[strings.TrimPrefix(w, "./")]; !ok {
			return nil, fmt.Errorf("%s: %q: %w", input, w, ErrNoMember)
		}
	}
	return out, nil
}
