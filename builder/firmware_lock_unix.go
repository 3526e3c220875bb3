//go:build unix

package builder

import (
	"fmt"
	"os"
	"syscall"
)

// lockBuildRoot takes an exclusive lock next to the build root, so builds
// sharing the fixed path wait for each other. The returned func releases it.
func lockBuildRoot(root string) (func(), error) {
	f, err := os.OpenFile(root+".lock", os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking build root: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking build root %s: %w", root, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
