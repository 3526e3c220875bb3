package runner

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/mkcvm/mkcvm/initrd/runner/runnertest"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestNSExecutor runs the static hello workload for real in new mount, PID,
// UTS and IPC namespaces (needs root; the test binary re-executes itself as
// the namespace child).
func TestNSExecutor(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for namespaces")
	}
	if testing.Short() {
		t.Skip("builds the hello workload")
	}
	wd, err := os.MkdirTemp("", "ns")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(wd)
	root, share := filepath.Join(wd, "root"), filepath.Join(wd, "share")
	for _, d := range []string{root + "/bin", share} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "bin/hello"), runnertest.Hello(t), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(share, SecretName), []byte("s3cret"), 0o444); err != nil {
		t.Fatal(err)
	}
	var out syncBuf
	x := &NSExecutor{Self: "/proc/self/exe", Out: &out, Prefix: "workload"}
	code, err := x.Run(t.Context(), &Spec{Root: root, Share: share, Argv: []string{"hello", "a b"},
		Env: []string{"PATH=/bin", "GREETING=ns", "HELLO_EXIT=5"}, UID: 1000, GID: 1000, Cwd: "/", Hostname: "wl"})
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("namespaces not permitted here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	got := out.b.String()
	t.Logf("output:\n%s", got)
	if code != 5 {
		t.Errorf("exit code %d, want 5", code)
	}
	for _, want := range []string{
		`workload: hello from the mkcvm workload: args=["a b"] greeting="ns" pid=1 uid=1000 host=wl`,
		"workload[stderr]: hello: a line on stderr",
		"workload: HELLO-SECRET s3cret",
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("output lacks %q", want)
		}
	}
	if h, _ := os.Hostname(); h == "wl" {
		t.Error("the workload's hostname leaked into the host's UTS namespace")
	}
}

// TestNSExecutorSetupError: a failure before the workload's exec is a
// runner error, not a workload exit code.
func TestNSExecutorSetupError(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root for namespaces")
	}
	wd := t.TempDir()
	root, share := filepath.Join(wd, "root"), filepath.Join(wd, "share")
	for _, d := range []string{root, share} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var out syncBuf
	x := &NSExecutor{Self: "/proc/self/exe", Out: &out, Prefix: "workload"}
	_, err := x.Run(t.Context(), &Spec{Root: root, Share: share, Argv: []string{"missing"}, Env: []string{"PATH=/bin"}, Cwd: "/", Hostname: "wl"})
	if errors.Is(err, syscall.EPERM) {
		t.Skipf("namespaces not permitted here: %v", err)
	}
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), `"missing" not found in PATH`) {
		t.Fatalf("err = %v, want ErrSetup naming the missing entrypoint", err)
	}
}
