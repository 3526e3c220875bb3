package builder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/initrd"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/manifest"
)

// smallRecipe writes a recipe with local-file inputs into dir and returns
// its path. Firmware and kernel are synthetic: these tests exercise the
// build, not the boot.
func smallRecipe(t *testing.T, dir, extra string) string {
	t.Helper()
	files := map[string][]byte{
		"fw/OVMF.fd":     bytes.Repeat([]byte("F"), 4096),
		"kernel/bzImage": bytes.Repeat([]byte("K"), 8192),
	}
	var inputs strings.Builder
	for _, name := range []string{"fw/OVMF.fd", "kernel/bzImage"} {
		b := files[name]
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		key := strings.SplitN(name, "/", 2)[0]
		fmt.Fprintf(&inputs, "[inputs.%s]\nfile = %q\nsha256 = %q\nsize = %d\n\n", key, name, hexSum(b), len(b))
	}
	text := `name = "small"
epoch = 1000
cmdline = "console=ttyS0"
kernel = "kernel"

[firmware]
image = "fw"

` + inputs.String() + `[initrd]
compression = "gzip"

[[initrd.file]]
path = "etc/hello"
contents = "hello\n"
mode = "0640"

` + extra
	p := filepath.Join(dir, "small.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// buildFile loads and builds the recipe at path into out.
func buildFile(t *testing.T, path, out string, cache *Cache) (*BuildResult, error) {
	t.Helper()
	r, text, root, err := LoadRecipe(path)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return Build(t.Context(), r, BuildOptions{
		Out: out, RecipeText: text, ModuleDir: repoDir(t), Cache: cache,
		Fetcher: NewSourceFetcher(r, root, nil),
	})
}

// digests returns name -> sha256 of every file below dir.
func digests(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := sha256.Sum256(b)
		out[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBuildReproducible builds the same recipe twice from different
// folders with different TZ, umask, HOME, GOCACHE, caches and working
// directories and compares every output file.
func TestBuildReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the init twice")
	}
	// The module cache is shared (it only locates sources); everything
	// else that could leak differs between the two runs.
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOMODCACHE", strings.TrimSpace(string(modcache)))
	var runs []map[string]string
	for i, env := range []struct{ tz, umask string }{{"UTC", "022"}, {"Asia/Kolkata", "077"}} {
		dir := t.TempDir()
		recipe := smallRecipe(t, filepath.Join(dir, "recipe"), "")
		t.Setenv("TZ", env.tz)
		t.Setenv("HOME", filepath.Join(dir, "home"))
		t.Setenv("GOCACHE", filepath.Join(dir, "gocache"))
		t.Chdir(dir)
		var mask int
		fmt.Sscanf(env.umask, "%o", &mask)
		old := syscall.Umask(mask)
		out := filepath.Join(dir, "out", fmt.Sprint("bundle", i))
		res, err := buildFile(t, recipe, out, &Cache{Dir: filepath.Join(dir, "cache")})
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		if err := manifest.Validate(res.Manifest); err != nil {
			t.Error(err)
		}
		runs = append(runs, digests(t, out))
	}
	if len(runs[0]) != 5 {
		t.Errorf("outputs: %v, want 5 files", runs[0])
	}
	if diff := cmp.Diff(runs[0], runs[1]); diff != "" {
		t.Errorf("builds differ (-first +second):\n%s", diff)
	}
}

func TestBuildOutputs(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the init")
	}
	dir := t.TempDir()
	recipe := smallRecipe(t, dir, "")
	out := filepath.Join(dir, "out")
	res, err := buildFile(t, recipe, out, sharedCache(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(out, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, res.ManifestJSON) || !bytes.HasSuffix(raw, []byte("}\n")) {
		t.Error("manifest.json is not the encoded manifest with a trailing newline")
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Every artifact on disk matches the manifest.
	got := digests(t, out)
	for _, a := range m.Artifacts {
		if got[a.Name] != a.SHA256 {
			t.Errorf("%s: sha256 on disk %s, manifest %s", a.Name, got[a.Name], a.SHA256)
		}
	}
	if want := []string{"OVMF.fd", "cmdline", "initrd.cpio.gz", "vmlinuz"}; !cmp.Equal(artifactNames(m), want) {
		t.Errorf("artifacts %v, want %v", artifactNames(m), want)
	}
	if c, _ := os.ReadFile(filepath.Join(out, CmdlineFile)); string(c) != "console=ttyS0" {
		t.Errorf("cmdline file = %q", c)
	}
	if m.Recipe.SHA256 != hexSum([]byte(m.Recipe.Text)) || m.Toolchain.Go == "" || len(m.Toolchain.Modules) == 0 {
		t.Errorf("recipe/toolchain not recorded: %+v %+v", m.Recipe.SHA256, m.Toolchain.Go)
	}
	// The initrd holds exactly the base records, the file and the init.
	rd, _ := os.ReadFile(filepath.Join(out, "initrd.cpio.gz"))
	es, comp, err := initrd.Read("initrd", rd)
	if err != nil || comp != initrd.Gzip {
		t.Fatal(err, comp)
	}
	var paths []string
	for _, e := range es {
		paths = append(paths, e.Path)
	}
	want := []string{"dev", "etc", "proc", "sys", "tmp", "dev/console", "etc/hello", "init"}
	if diff := cmp.Diff(want, paths); diff != "" {
		t.Errorf("initrd paths (-want +got):\n%s", diff)
	}
	// A second build replaces the earlier output.
	if _, err := buildFile(t, recipe, out, sharedCache(t)); err != nil {
		t.Errorf("rebuilding into an earlier output: %v", err)
	}
	// A directory that is not a build output is never replaced.
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "keep"), nil, 0o644)
	if _, err := buildFile(t, recipe, other, sharedCache(t)); !errors.Is(err, ErrOutputExists) {
		t.Errorf("err = %v, want ErrOutputExists", err)
	}
}

func artifactNames(m *manifest.Manifest) []string {
	var out []string
	for _, a := range m.Artifacts {
		out = append(out, a.Name)
	}
	return out
}

func TestBuildBadInputs(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(t *testing.T, dir, recipe string)
		want  []string
		isErr error
	}{
		{"wrong sha256", func(t *testing.T, dir, recipe string) {
			replaceIn(t, recipe, hexSum(bytes.Repeat([]byte("K"), 8192)), strings.Repeat("0", 64))
		}, []string{`input "kernel": sha256: `, "want " + strings.Repeat("0", 64)}, ErrPin},
		{"truncated", func(t *testing.T, dir, recipe string) {
			os.WriteFile(filepath.Join(dir, "kernel", "bzImage"), bytes.Repeat([]byte("K"), 8000), 0o644)
		}, []string{`input "kernel": size: `, "got 8000 bytes, want 8192 (truncated?)"}, ErrPin},
		{"missing file", func(t *testing.T, dir, recipe string) {
			os.Remove(filepath.Join(dir, "fw", "OVMF.fd"))
		}, []string{`input "fw": file: `, "no such file"}, ErrMissing},
		{"unknown key", func(t *testing.T, dir, recipe string) {
			replaceIn(t, recipe, "size = 4096", "size = 4096\nsha512 = \"x\"")
		}, []string{`inputs.fw.sha512: unknown key`}, ErrRecipe},
		{"escaping path", func(t *testing.T, dir, recipe string) {
			replaceIn(t, recipe, `"fw/OVMF.fd"`, `"../OVMF.fd"`)
		}, []string{`input "fw": file: "../OVMF.fd" escapes the recipe folder`}, ErrRecipe},
		{"escaping symlink", func(t *testing.T, dir, recipe string) {
			outside := filepath.Join(t.TempDir(), "OVMF.fd")
			os.WriteFile(outside, bytes.Repeat([]byte("F"), 4096), 0o644)
			os.Remove(filepath.Join(dir, "fw", "OVMF.fd"))
			os.Symlink(outside, filepath.Join(dir, "fw", "OVMF.fd"))
		}, []string{`input "fw": file: `, "escapes"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			rdir := filepath.Join(dir, "recipe")
			recipe := smallRecipe(t, rdir, "")
			tc.mod(t, rdir, recipe)
			out := filepath.Join(dir, "out", "bundle")
			_, err := buildFile(t, recipe, out, &Cache{Dir: filepath.Join(dir, "cache")})
			if err == nil {
				t.Fatal("build succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.isErr != nil && !errors.Is(err, tc.isErr) {
				t.Errorf("error %v is not %v", err, tc.isErr)
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("output directory exists after a failed build: %v", err)
			}
			if ents, _ := os.ReadDir(filepath.Join(dir, "out")); len(ents) != 0 {
				t.Errorf("leftovers next to the output: %v", ents)
			}
		})
	}
}

func replaceIn(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644)
}

// TestBootDefaultRecipe builds recipes/debian-bookworm.toml and boots it
// in QEMU (TCG) with its own OVMF CODE/VARS, kernel, initrd and command
// line: the init's banner must reach the serial console.
func TestBootDefaultRecipe(t *testing.T) {
	vmtest.Require(t)
	debs := debDirs(t)
	path := filepath.Join(repoDir(t), "recipes", "debian-bookworm.toml")
	r, text, root, err := LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out := filepath.Join(t.TempDir(), "bundle")
	if _, err := Build(t.Context(), r, BuildOptions{
		Out: out, RecipeText: text, ModuleDir: repoDir(t), Cache: sharedCache(t),
		Fetcher: NewSourceFetcher(r, root, debs),
	}); err != nil {
		t.Fatal(err)
	}
	res, err := vmtest.Boot(t.Context(), t, vmtest.Options{
		Code: filepath.Join(out, "OVMF_CODE.fd"), Vars: filepath.Join(out, "OVMF_VARS.fd"),
		Kernel: filepath.Join(out, KernelFile), Initrd: filepath.Join(out, InitrdName(r.Initrd.Compression)),
		Append: r.Cmdline, MemoryMiB: 1024, VCPUs: 1,
	})
	if err != nil {
		t.Fatalf("boot: %v\nconsole:\n%s", err, tailLines(res, 30))
	}
	if !res.Dump.Banner {
		t.Fatalf("no %q on the console:\n%s", vmtest.Banner, tailLines(res, 30))
	}
	// OVMF's direct kernel boot (QEMU -kernel/-initrd) appends
	// " initrd=initrd" to the command line it hands the kernel.
	if want := r.Cmdline + " initrd=initrd"; res.Dump.Cmdline != want {
		t.Errorf("guest /proc/cmdline = %q, want %q", res.Dump.Cmdline, want)
	}
}

func tailLines(res *vmtest.Result, n int) string {
	if res == nil {
		return ""
	}
	lines := strings.Split(res.Console, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
