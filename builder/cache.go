package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
)

// Cache is a content-addressed store of verified input bytes:
// <Dir>/sha256/<hex>. Entries are re-verified (size and sha256) on every
// read; a corrupt entry is removed and counts as a miss.
type Cache struct {
	Dir string
}

// DefaultCacheDir is $XDG_CACHE_HOME/mkcvm (os.UserCacheDir).
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the cache directory: %w", err)
	}
	return filepath.Join(d, "mkcvm"), nil
}

func (c *Cache) path(sum string) string { return filepath.Join(c.Dir, "sha256", sum) }

// Get returns the cached bytes with this sha256 and size, or ok=false.
func (c *Cache) Get(sum string, size int64) (b []byte, ok bool) {
	if c == nil || c.Dir == "" {
		return nil, false
	}
	p := c.path(sum)
	st, err := os.Stat(p)
	if err != nil || st.Size() != size {
		return nil, false
	}
	b, err = os.ReadFile(p)
	if err != nil {
		return nil, false
	}
	if h := sha256.Sum256(b); hex.EncodeToString(h[:]) != sum {
		os.Remove(p)
		return nil, false
	}
	return b, true
}

// Has reports whether an entry of this sha256 and size exists (without
// reading it).
func (c *Cache) Has(sum string, size int64) bool {
	if c == nil || c.Dir == "" {
		return false
	}
	st, err := os.Stat(c.path(sum))
	return err == nil && st.Size() == size
}

// Put stores verified bytes under their sha256 (atomically).
func (c *Cache) Put(sum string, b []byte) error {
	if c == nil || c.Dir == "" {
		return nil
	}
	return writeFileAtomic(c.path(sum), b)
}

// writeFileAtomic writes b to p through a temporary file in the same
// directory and a rename, with mode 0644 regardless of the umask.
func writeFileAtomic(p string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}
