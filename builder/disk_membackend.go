package builder

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/diskfs/go-diskfs/backend"
)

// memDisk is an in-memory go-diskfs backend, so a disk image is assembled
// without touching the file system and only returned once complete (no
// partial disk on error).
type memDisk struct {
	b   []byte
	off int64
}

var _ backend.Storage = (*memDisk)(nil)
var _ backend.WritableFile = (*memDisk)(nil)

func newMemDisk(size int64) *memDisk { return &memDisk{b: make([]byte, size)} }

func (m *memDisk) Stat() (fs.FileInfo, error) { return memInfo{size: int64(len(m.b))}, nil }
func (m *memDisk) Close() error               { return nil }
func (m *memDisk) Sys() (*os.File, error)     { return nil, backend.ErrNotSuitable }
func (m *memDisk) Path() string               { return "" }
func (m *memDisk) Writable() (backend.WritableFile, error) {
	return m, nil
}

func (m *memDisk) Read(p []byte) (int, error) {
	n, err := m.ReadAt(p, m.off)
	m.off += int64(n)
	return n, err
}

func (m *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("memdisk: negative offset")
	}
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDisk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("memdisk: write past end of disk")
	}
	return copy(m.b[off:], p), nil
}

func (m *memDisk) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += m.off
	case io.SeekEnd:
		offset += int64(len(m.b))
	default:
		return 0, errors.New("memdisk: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("memdisk: negative seek")
	}
	m.off = offset
	return offset, nil
}

type memInfo struct{ size int64 }

func (i memInfo) Name() string       { return "disk.img" }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
