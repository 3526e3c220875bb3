package initrd

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
)

// newc ("new ASCII") cpio format, as read by the Linux initramfs unpacker
// (Documentation/driver-api/early-userspace/buffer-format.rst, and
// cpio(5) "New ASCII Format"): a 110-byte header of the magic and 13
// eight-digit hex fields, the NUL-terminated name padded to a multiple of
// 4 bytes, then the data padded to a multiple of 4 bytes. A record named
// TRAILER!!! ends the archive.
const (
	newcMagic     = "070701"
	SizeofHeader  = 110
	newcFieldLen  = 8
	newcFields    = 13
	trailerName   = "TRAILER!!!"
	maxNameSize   = 4096
	newcAlignment = 4
)

// Header field indexes, in on-disk order after the magic.
const (
	fIno = iota
	fMode
	fUID
	fGID
	fNLink
	fMTime
	fFileSize
	fDevMajor
	fDevMinor
	fRDevMajor
	fRDevMinor
	fNameSize
	fCheck
)

var fieldNames = [newcFields]string{"c_ino", "c_mode", "c_uid", "c_gid", "c_nlink", "c_mtime", "c_filesize", "c_devmajor", "c_devminor", "c_rdevmajor", "c_rdevminor", "c_namesize", "c_check"}

// File type bits of Record.Mode (the st_mode values of Linux).
const (
	TypeMask    = 0o170000
	TypeFIFO    = 0o010000
	TypeChar    = 0o020000
	TypeDir     = 0o040000
	TypeBlock   = 0o060000
	TypeReg     = 0o100000
	TypeSymlink = 0o120000
	TypeSocket  = 0o140000
	PermMask    = 0o7777
)

var knownTypes = []uint32{TypeFIFO, TypeChar, TypeDir, TypeBlock, TypeReg, TypeSymlink, TypeSocket}

// Record is one archive member. The writer takes only these fields; every
// other header field is canonical (see Write).
type Record struct {
	// Path is relative, clean and /-separated ("bin/ls").
	Path string
	// Mode holds the file type bits and the permission bits.
	Mode uint32
	// Data is the file contents, or the target of a symlink.
	Data []byte
	// RDevMajor and RDevMinor identify a character or block device.
	RDevMajor, RDevMinor uint32
}

// Entry is a record as read from an archive, with its raw header values.
type Entry struct {
	Record
	Ino, UID, GID, NLink uint32
	MTime                int64
	DevMajor, DevMinor   uint32
	Offset               int64 // offset of the header in the archive
}

// Dir, File, Symlink and CharDev build records.
func Dir(p string, perm uint32) Record { return Record{Path: p, Mode: TypeDir | perm&PermMask} }
func File(p string, perm uint32, data []byte) Record {
	return Record{Path: p, Mode: TypeReg | perm&PermMask, Data: data}
}
func Symlink(p, target string) Record {
	return Record{Path: p, Mode: TypeSymlink | 0o777, Data: []byte(target)}
}
func CharDev(p string, perm, major, minor uint32) Record {
	return Record{Path: p, Mode: TypeChar | perm&PermMask, RDevMajor: major, RDevMinor: minor}
}

// IsDir reports whether r is a directory.
func (r Record) IsDir() bool { return r.Mode&TypeMask == TypeDir }

// Canonical checks records and returns them in archive order: every
// missing parent directory added (mode 0755), all directories first, each
// group sorted by path. Duplicate paths, unclean or absolute paths, data
// on directories or devices, and unknown file types are errors.
func Canonical(recs []Record) ([]Record, error) {
	byPath := make(map[string]Record, len(recs))
	for _, r := range recs {
		if err := checkRecord(r); err != nil {
			return nil, err
		}
		if _, dup := byPath[r.Path]; dup {
			return nil, fmt.Errorf("%q: duplicate path", r.Path)
		}
		byPath[r.Path] = r
	}
	for _, r := range recs {
		for d := path.Dir(r.Path); d != "."; d = path.Dir(d) {
			p, ok := byPath[d]
			if !ok {
				byPath[d] = Dir(d, 0o755)
			} else if !p.IsDir() {
				return nil, fmt.Errorf("%q: parent %q is not a directory", r.Path, d)
			}
		}
	}
	out := make([]Record, 0, len(byPath))
	for _, r := range byPath {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int {
		if a.IsDir() != b.IsDir() {
			if a.IsDir() {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Path, b.Path)
	})
	return out, nil
}

func checkRecord(r Record) error {
	switch {
	case r.Path == "" || r.Path == "." || strings.HasPrefix(r.Path, "/") || path.Clean(r.Path) != r.Path ||
		r.Path == ".." || strings.HasPrefix(r.Path, "../") || strings.ContainsRune(r.Path, 0) || r.Path == trailerName:
		return fmt.Errorf("%q: path must be relative, clean and inside the archive", r.Path)
	case len(r.Path)+1 > maxNameSize:
		return fmt.Errorf("%q: path longer than %d bytes", r.Path, maxNameSize-1)
	case r.Mode&^(TypeMask|PermMask) != 0 || !slices.Contains(knownTypes, r.Mode&TypeMask):
		return fmt.Errorf("%q: mode %#o: unknown file type", r.Path, r.Mode)
	}
	t := r.Mode & TypeMask
	if t != TypeReg && t != TypeSymlink && len(r.Data) > 0 {
		return fmt.Errorf("%q: mode %#o: only files and symlinks carry data", r.Path, r.Mode)
	}
	if t != TypeChar && t != TypeBlock && (r.RDevMajor != 0 || r.RDevMinor != 0) {
		return fmt.Errorf("%q: mode %#o: only devices have a device number", r.Path, r.Mode)
	}
	if uint64(len(r.Data)) > 0xffffffff {
		return fmt.Errorf("%q: %d bytes is too large for newc", r.Path, len(r.Data))
	}
	return nil
}

// Write writes recs as a canonical newc archive: records in Canonical
// order, uid/gid 0, mtime = epoch, inode numbers 0..n-1 in archive order,
// nlink 2 for directories and 1 otherwise, device of the archive 0, then
// the trailer. Inode numbers count from 0 and hex digits are upper case,
// as GNU cpio --reproducible writes them. The same records and epoch always give the same bytes.
func Write(w io.Writer, epoch int64, recs []Record) error {
	if epoch < 0 || epoch > 0xffffffff {
		return fmt.Errorf("epoch %d does not fit the 32-bit newc mtime", epoch)
	}
	recs, err := Canonical(recs)
	if err != nil {
		return err
	}
	hdr := make([]byte, 0, SizeofHeader+maxNameSize+2*newcAlignment)
	for i, r := range recs {
		nlink := uint32(1)
		if r.IsDir() {
			nlink = 2
		}
		hdr = appendHeader(hdr[:0], [newcFields]uint32{
			fIno: uint32(i), fMode: r.Mode, fNLink: nlink, fMTime: uint32(epoch),
			fFileSize: uint32(len(r.Data)), fRDevMajor: r.RDevMajor, fRDevMinor: r.RDevMinor,
			fNameSize: uint32(len(r.Path) + 1),
		}, r.Path)
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		if _, err := w.Write(r.Data); err != nil {
			return err
		}
		if _, err := w.Write(padding(len(r.Data))); err != nil {
			return err
		}
	}
	hdr = appendHeader(hdr[:0], [newcFields]uint32{fNLink: 1, fNameSize: uint32(len(trailerName) + 1)}, trailerName)
	_, err = w.Write(hdr)
	return err
}

var zeros [newcAlignment]byte

func padding(n int) []byte { return zeros[:(newcAlignment-n%newcAlignment)%newcAlignment] }

func appendHeader(b []byte, f [newcFields]uint32, name string) []byte {
	b = append(b, newcMagic...)
	for _, v := range f {
		b = fmt.Appendf(b, "%08X", v)
	}
	b = append(b, name...)
	b = append(b, 0)
	return append(b, padding(SizeofHeader+len(name)+1)...)
}

// Marshal returns the canonical archive of recs (see Write).
func Marshal(epoch int64, recs []Record) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, epoch, recs); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ErrNoTrailer is returned when an archive ends without a TRAILER!!! record.
var ErrNoTrailer = errors.New("missing TRAILER!!! record")

// Parse reads an uncompressed newc archive up to its trailer. input names
// the archive in errors. Bytes after the trailer must be zero padding.
func Parse(input string, b []byte) ([]Entry, error) {
	var out []Entry
	off := 0
	for {
		if len(b)-off < SizeofHeader {
			return nil, &FormatError{Input: input, Offset: int64(off), Field: "header", Reason: fmt.Sprintf("%d bytes left, need %d", len(b)-off, SizeofHeader), Err: ErrNoTrailer}
		}
		if m := string(b[off : off+len(newcMagic)]); m != newcMagic {
			return nil, &FormatError{Input: input, Offset: int64(off), Field: "c_magic", Reason: fmt.Sprintf("%q, want %q", m, newcMagic)}
		}
		var f [newcFields]uint32
		for i := range f {
			p := off + len(newcMagic) + i*newcFieldLen
			v, err := parseHex(b[p : p+newcFieldLen])
			if err != nil {
				return nil, &FormatError{Input: input, Offset: int64(p), Field: fieldNames[i], Reason: err.Error()}
			}
			f[i] = v
		}
		e, next, err := parseEntry(input, b, off, f)
		if err != nil {
			return nil, err
		}
		if e.Path == trailerName {
			return out, checkTail(input, b, next)
		}
		out = append(out, e)
		off = next
	}
}

func parseEntry(input string, b []byte, off int, f [newcFields]uint32) (Entry, int, error) {
	ferr := func(field int, reason string) error {
		return &FormatError{Input: input, Offset: int64(off + len(newcMagic) + field*newcFieldLen), Field: fieldNames[field], Reason: reason}
	}
	if f[fNameSize] < 2 || f[fNameSize] > maxNameSize {
		return Entry{}, 0, ferr(fNameSize, fmt.Sprintf("%d, want 2..%d", f[fNameSize], maxNameSize))
	}
	nameEnd := off + SizeofHeader + int(f[fNameSize])
	if nameEnd > len(b) {
		return Entry{}, 0, ferr(fNameSize, fmt.Sprintf("name ends at 0x%x, past the end 0x%x", nameEnd, len(b)))
	}
	name := b[off+SizeofHeader : nameEnd]
	if name[len(name)-1] != 0 || bytes.IndexByte(name[:len(name)-1], 0) >= 0 {
		return Entry{}, 0, &FormatError{Input: input, Offset: int64(off + SizeofHeader), Field: "name", Reason: "not a single NUL-terminated string"}
	}
	dataStart := nameEnd + len(padding(SizeofHeader+int(f[fNameSize])))
	dataEnd := uint64(dataStart) + uint64(f[fFileSize])
	if dataStart > len(b) || dataEnd > uint64(len(b)) {
		return Entry{}, 0, ferr(fFileSize, fmt.Sprintf("%d bytes of data from 0x%x run past the end 0x%x", f[fFileSize], dataStart, len(b)))
	}
	if f[fCheck] != 0 {
		return Entry{}, 0, ferr(fCheck, fmt.Sprintf("%#x, must be 0 in newc", f[fCheck]))
	}
	e := Entry{
		Record: Record{Path: string(name[:len(name)-1]), Mode: f[fMode], RDevMajor: f[fRDevMajor], RDevMinor: f[fRDevMinor]},
		Ino:    f[fIno], UID: f[fUID], GID: f[fGID], NLink: f[fNLink], MTime: int64(f[fMTime]),
		DevMajor: f[fDevMajor], DevMinor: f[fDevMinor], Offset: int64(off),
	}
	if f[fFileSize] > 0 {
		e.Data = bytes.Clone(b[dataStart:dataEnd])
	}
	next := int(dataEnd) + len(padding(int(f[fFileSize])))
	return e, min(next, len(b)), nil
}

func checkTail(input string, b []byte, off int) error {
	for i := off; i < len(b); i++ {
		if b[i] != 0 {
			return &FormatError{Input: input, Offset: int64(i), Field: "padding", Reason: fmt.Sprintf("non-zero byte 0x%02x after the trailer", b[i])}
		}
	}
	return nil
}

func parseHex(b []byte) (uint32, error) {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return 0, fmt.Errorf("%q is not 8 hex digits", b)
		}
	}
	v, err := strconv.ParseUint(string(b), 16, 32)
	return uint32(v), err
}
