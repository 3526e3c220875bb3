package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/mkcvm/mkcvm/internal/depcheck"
)

const mod = "github.com/mkcvm/mkcvm"

// TestDependencies keeps the in-guest runner small and auditable: no build,
// publishing or CLI layers, no Sigstore, no cgo-only packages.
func TestDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	// The runner is built with cgo off; with it on, net and os/user would
	// list runtime/cgo.
	t.Setenv("CGO_ENABLED", "0")
	bad, err := depcheck.Forbidden(mod+"/cmd/mkcvm-runner", []string{
		mod + "/builder", mod + "/manifest", mod + "/cmd/mkcvm", mod + "/internal/vmtest",
		"github.com/spf13/cobra", "github.com/spf13/pflag", "github.com/sigstore", "github.com/u-root/mkuimage",
		"github.com/google/go-tpm-tools/simulator", "github.com/google/go-containerregistry/pkg/authn/k8schain",
		"runtime/cgo",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Errorf("cmd/mkcvm-runner depends on forbidden %s", b)
	}
}

// TestStaticBuild builds the runner the way the initrd does (CGO_ENABLED=0)
// and checks the result is a static executable.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the runner")
	}
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if isDynamic(b) {
		t.Error("the runner binary has a PT_INTERP program header (dynamically linked)")
	}
	t.Logf("runner binary: %d bytes", len(b))
}
