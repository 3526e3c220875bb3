// Package vmtest boots guests in QEMU for mkcvm's integration tests: it
// wraps internal/qemu with testing.TB (scratch directories, logs) and the
// skip-or-fail rule of Require.
package vmtest

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/mkcvm/mkcvm/internal/qemu"
)

// Types shared with internal/qemu.
type (
	Forward = qemu.Forward
	Options = qemu.Options
	Result  = qemu.Result
	Dump    = qemu.Dump
)

// Banner is the line mkcvm-init prints once it runs as init.
const Banner = qemu.Banner

// Require skips t when QEMU or swtpm are missing, unless MKCVM_REQUIRE_VM=1
// (set by `make test`), in which case it fails: CI must not skip boots.
func Require(t testing.TB) {
	t.Helper()
	for _, tool := range qemu.Tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
				t.Fatalf("%s not installed and MKCVM_REQUIRE_VM=1: %v", tool, err)
			}
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
}

// Boot runs one guest to completion in a per-test scratch directory; see
// qemu.Run.
func Boot(ctx context.Context, t testing.TB, o Options) (*Result, error) {
	return qemu.Run(ctx, t.TempDir(), o, t.Logf)
}

// ParseDump parses mkcvm-init's console records; see qemu.ParseDump.
func ParseDump(console string) (*Dump, error) { return qemu.ParseDump(console) }
