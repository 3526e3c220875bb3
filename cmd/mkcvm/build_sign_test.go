package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuildSignKey builds with --sign-key and checks the bundle inside the
// output verifies with verify-manifest against the build's artifacts, and
// that an unusable key fails before anything is written.
func TestBuildSignKey(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the init")
	}
	dir := t.TempDir()
	body := []byte("firmware")
	recipe := cliRecipe(t, dir, body, fmt.Sprintf("%x", sha256.Sum256(body)))
	cache := filepath.Join(dir, "cache")
	prefix := filepath.Join(dir, "k")
	if _, stderr, code := runCLI(t, "keygen", "--out", prefix); code != 0 {
		t.Fatalf("keygen: %s", stderr)
	}

	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	badOut := filepath.Join(dir, "bad-out")
	_, stderr, code := runCLI(t, "build", recipe, "-o", badOut, "--cache", cache, "--module", "../..", "--sign-key", bad)
	if code == 0 || !strings.Contains(stderr, "--sign-key "+bad) {
		t.Errorf("bad key: exit %d, stderr %q; want an error naming --sign-key", code, stderr)
	}
	if _, err := os.Stat(badOut); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("output exists after a failed signed build: %v", err)
	}

	out := filepath.Join(dir, "out")
	if _, stderr, code := runCLI(t, "build", recipe, "-o", out, "--cache", cache, "--module", "../..", "--sign-key", prefix+".key"); code != 0 {
		t.Fatalf("build --sign-key: exit %d: %s", code, stderr)
	}
	bundle := filepath.Join(out, "manifest.sigstore.json")
	stdout, stderr, code := runCLI(t, "verify-manifest", "--key", prefix+".pub", "--artifacts", out, bundle)
	if code != 0 {
		t.Fatalf("verify-manifest: exit %d: stdout %q stderr %q", code, stdout, stderr)
	}
	// A different key must not verify the same bundle.
	other := filepath.Join(dir, "other")
	runCLI(t, "keygen", "--out", other)
	if _, _, code := runCLI(t, "verify-manifest", "--key", other+".pub", bundle); code == 0 {
		t.Errorf("verify-manifest accepted the bundle with another key")
	}
}
