package depcheck

import (
	"os/exec"
	"testing"
)

const mod = "github.com/mkcvm/mkcvm"

// rules lists, per package pattern, the import prefixes it must never
// depend on (see the package map in the style guide).
var rules = []struct {
	pkg       string
	forbidden []string
}{
	// ovmf itself (ovmf/ovmftest is a test helper and may run tools).
	{mod + "/ovmf", []string{mod + "/measure", mod + "/builder", mod + "/manifest", mod + "/initrd", mod + "/cmd", "github.com/spf13/cobra", "net/http", "os/exec"}},
	{mod + "/uki/...", []string{mod + "/measure", mod + "/builder", mod + "/manifest", mod + "/initrd", mod + "/cmd", "github.com/spf13/cobra", "net/http", "os/exec"}},
	{mod + "/measure/...", []string{mod + "/builder", mod + "/manifest", mod + "/initrd", mod + "/cmd", "github.com/spf13/cobra", "net/http", "os/exec"}},
	{mod + "/cmd/mkcvm-init", []string{mod + "/builder", mod + "/manifest", "github.com/spf13/cobra", "github.com/sigstore"}},
	{mod + "/cmd/mkcvm-runner", []string{mod + "/builder", mod + "/manifest", "github.com/spf13/cobra", "github.com/sigstore", "github.com/u-root/mkuimage"}},
}

func TestDependencyDirection(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			if err := exec.Command("go", "list", r.pkg).Run(); err != nil {
				t.Skipf("%s does not exist yet", r.pkg)
			}
			bad, err := Forbidden(r.pkg, r.forbidden)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bad {
				t.Errorf("%s depends on forbidden %s", r.pkg, b)
			}
		})
	}
}

// TestCLIWithoutRunnerDeviceCode keeps the runner's TEE clients, network
// set-up and their global flags out of the mkcvm CLI: the builder and the
// verifiers use only the runner's formats (initrd/runner/spec).
func TestCLIWithoutRunnerDeviceCode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	deps, err := Deps(mod + "/cmd/mkcvm")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		if d == mod+"/initrd/runner" {
			t.Errorf("cmd/mkcvm depends on %s; use %s/initrd/runner/spec", d, mod)
		}
	}
}

func TestForbiddenFindsKnownEdge(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	// This package imports os/exec; the check must see it.
	bad, err := Forbidden(mod+"/internal/depcheck", []string{"os/exec"})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 1 || bad[0] != "os/exec" {
		t.Fatalf("Forbidden = %v, want [os/exec]", bad)
	}
}
