package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/initrd"
)

// runCLI runs mkcvm in-process and returns stdout, stderr and the exit code.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.ExecuteContext(t.Context())
	code := 0
	if err != nil {
		fmt.Fprintln(&errb, "mkcvm:", err)
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

// cliRecipe writes a recipe with one local input into dir.
func cliRecipe(t *testing.T, dir string, body []byte, sum string) string {
	t.Helper()
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "fw.fd"), body, 0o644)
	text := fmt.Sprintf(`name = "cli"
kernel = "fw"
[firmware]
image = "fw"
[inputs.fw]
file = "fw.fd"
sha256 = %q
size = %d
[initrd]
compression = "none"
`, sum, len(body))
	p := filepath.Join(dir, "r.toml")
	os.WriteFile(p, []byte(text), 0o644)
	return p
}

func TestBuildCLIBadInput(t *testing.T) {
	dir := t.TempDir()
	body := []byte("firmware")
	recipe := cliRecipe(t, dir, body, strings.Repeat("a", 64))
	out := filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, "build", recipe, "-o", out, "--cache", filepath.Join(dir, "cache"), "--module", "../..")
	if code == 0 {
		t.Fatalf("exit 0; stdout %q", stdout)
	}
	if !strings.Contains(stderr, `input "fw": sha256: input does not match its pin: got `) {
		t.Errorf("stderr = %q", stderr)
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("output exists after a failed build: %v", err)
	}
}

func TestBuildCLIJSONAndInputs(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the init")
	}
	dir := t.TempDir()
	body := []byte("firmware")
	h := sha256.Sum256(body)
	recipe := cliRecipe(t, dir, body, fmt.Sprintf("%x", h))
	cache := filepath.Join(dir, "cache")
	// inputs: offline with an empty cache reports MISSING and exits 1.
	stdout, stderr, code := runCLI(t, "inputs", recipe, "--cache", cache, "--offline")
	if code != 1 || !strings.HasPrefix(stdout, "MISSING  fw") || !strings.Contains(stderr, "mkcvm lock") {
		t.Errorf("inputs --offline: code %d stdout %q stderr %q", code, stdout, stderr)
	}
	stdout, _, code = runCLI(t, "inputs", recipe, "--cache", cache)
	if code != 0 || !strings.HasPrefix(stdout, "fetched  fw") {
		t.Errorf("inputs: code %d stdout %q", code, stdout)
	}
	out := filepath.Join(dir, "out")
	stdout, stderr, code = runCLI(t, "build", recipe, "-o", out, "--cache", cache, "--offline", "--json", "--module", "../..")
	if code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	var res buildResultJSON
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output %q: %v", stdout, err)
	}
	m, _ := os.ReadFile(filepath.Join(out, "manifest.json"))
	if res.Dir != out || res.ManifestSHA256 != fmt.Sprintf("%x", sha256.Sum256(m)) {
		t.Errorf("result %+v does not describe %s", res, out)
	}
	// initrd ls lists the built initrd.
	stdout, _, code = runCLI(t, "initrd", "ls", filepath.Join(out, "initrd.cpio"))
	if code != 0 || !strings.Contains(stdout, "020600 0 0 0 - dev/console (5,1)\n") || !strings.HasSuffix(stdout, " init\n") {
		t.Errorf("initrd ls: %d %q", code, stdout)
	}
}

func TestInitrdLsCompressions(t *testing.T) {
	raw, err := initrd.Marshal(0, []initrd.Record{initrd.File("init", 0o755, []byte("x"))})
	if err != nil {
		t.Fatal(err)
	}
	want := "100755 0 0 1 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881 init\n"
	for _, c := range []string{initrd.None, initrd.Gzip, initrd.Zstd} {
		z, err := initrd.Compress(c, raw)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "initrd")
		os.WriteFile(p, z, 0o644)
		stdout, stderr, code := runCLI(t, "initrd", "ls", p)
		if code != 0 || stdout != want {
			t.Errorf("%s: exit %d stdout %q stderr %q", c, code, stdout, stderr)
		}
	}
	p := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(p, []byte("070701zzzz"), 0o644)
	if _, stderr, code := runCLI(t, "initrd", "ls", p); code == 0 || !strings.Contains(stderr, "offset 0x0: header") {
		t.Errorf("bad archive: exit %d stderr %q", code, stderr)
	}
}
