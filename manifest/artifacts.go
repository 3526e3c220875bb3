package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
)

// CheckArtifacts hashes every artifact of m in fsys (by name) and reports
// every missing file, size or sha256 mismatch, joined.
func CheckArtifacts(fsys fs.FS, m *Manifest) error {
	var errs []error
	for _, a := range m.Artifacts {
		if err := checkArtifact(fsys, a); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkArtifact(fsys fs.FS, a Artifact) error {
	f, err := fsys.Open(a.Name)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrArtifact, a.Name, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrArtifact, a.Name, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if n != a.Size || got != a.SHA256 {
		return fmt.Errorf("%w: %s (%s): got %d bytes sha256 %s, manifest has %d bytes sha256 %s", ErrArtifact, a.Name, a.Role, n, got, a.Size, a.SHA256)
	}
	return nil
}
