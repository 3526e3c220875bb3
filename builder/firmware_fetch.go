package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// DefaultFirmwareCacheDir is where built firmware is cached when the caller
// does not choose: $XDG_CACHE_HOME/mkcvm/firmware (or ~/.cache/...).
func DefaultFirmwareCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the cache directory: %w", err)
	}
	return filepath.Join(d, "mkcvm", "firmware"), nil
}

// FetchFirmwareSource downloads the source package files into dir with
// `apt-get source --download-only PACKAGE=VERSION` when any pinned file is
// missing. It needs a deb-src entry for the release (docs/firmware.md).
// It does not check digests: BuildFirmware does, before using the files.
func FetchFirmwareSource(ctx context.Context, s *FirmwareSource, dir string, log io.Writer) error {
	missing := false
	for _, f := range s.Files {
		if _, err := os.Stat(filepath.Join(dir, f.Name)); errors.Is(err, fs.ErrNotExist) {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if log == nil {
		log = io.Discard
	}
	cmd := exec.CommandContext(ctx, "apt-get", "source", "--download-only", "-q", s.Package+"="+s.Version)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get source %s=%s (is a deb-src entry configured? see docs/firmware.md): %w", s.Package, s.Version, err)
	}
	return nil
}
