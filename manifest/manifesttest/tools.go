package manifesttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Cosign returns the path of the cosign binary for interop tests: $MKCVM_COSIGN
// (set by `make test`; the test fails if it is set but missing), else
// .cache/bin/cosign in the module root, else cosign on $PATH. Without any,
// the test is skipped.
func Cosign(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MKCVM_COSIGN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MKCVM_COSIGN=%s: %v (run `make cosign`)", p, err)
		}
		return p
	}
	if root := moduleRoot(); root != "" {
		p := filepath.Join(root, ".cache", "bin", "cosign")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	t.Skip("cosign not installed (make cosign installs it into .cache/bin)")
	return ""
}

func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}
