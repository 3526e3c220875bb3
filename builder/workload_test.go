package builder

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/initrd"
	"github.com/mkcvm/mkcvm/initrd/runner/spec"
)

const (
	testWorkloadImage  = "10.0.2.100/test/hello@sha256:5353535353535353535353535353535353535353535353535353535353535353"
	testWorkloadConfig = "sha256:a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8a8"
	// testWorkloadTOML is an [initrd.workload] table with values the
	// configuration file must carry verbatim (spaces, an empty argument,
	// '=' and '#').
	testWorkloadTOML = `
[initrd.workload]
image = "` + testWorkloadImage + `"
config = "` + testWorkloadConfig + `"
args = ["--from", "the recipe", "", "#not-a-comment"]
env = ["GREETING=hello e2e", "EMPTY=", "A=b=c"]
`
	// testWorkloadConf is the runner configuration file the workload above
	// must give, written by hand from docs/runner.md's format.
	testWorkloadConf = "mkcvm.image=" + testWorkloadImage + "\n" +
		"mkcvm.config=" + testWorkloadConfig + "\n" +
		"mkcvm.arg=--from\nmkcvm.arg=the recipe\nmkcvm.arg=\nmkcvm.arg=#not-a-comment\n" +
		"mkcvm.env=GREETING=hello e2e\nmkcvm.env=EMPTY=\nmkcvm.env=A=b=c\n"
)

// TestBuildWorkloadConfig builds a tiny recipe with a workload and checks
// that the initrd holds the runner configuration, byte for byte, and that
// the runner's parser reads back exactly the recipe's workload.
func TestBuildWorkloadConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the init")
	}
	dir := t.TempDir()
	path := smallRecipe(t, dir, testWorkloadTOML)
	out := filepath.Join(dir, "out")
	if _, err := buildFile(t, path, out, sharedCache(t)); err != nil {
		t.Fatal(err)
	}
	rd, err := os.ReadFile(filepath.Join(out, "initrd.cpio.gz"))
	if err != nil {
		t.Fatal(err)
	}
	es, _, err := initrd.Read("initrd.cpio.gz", rd)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	var conf *initrd.Entry
	for i, e := range es {
		paths = append(paths, e.Path)
		if e.Path == "etc/mkcvm/runner.conf" {
			conf = &es[i]
		}
	}
	want := []string{"dev", "etc", "etc/mkcvm", "proc", "sys", "tmp", "dev/console", "etc/hello", "etc/mkcvm/runner.conf", "init"}
	if d := cmp.Diff(want, paths); d != "" {
		t.Fatalf("initrd paths (-want +got):\n%s", d)
	}
	wantLine := "100644 0 0 " + strconv.Itoa(len(testWorkloadConf)) + " " + hexSum([]byte(testWorkloadConf)) + " etc/mkcvm/runner.conf"
	if got := initrd.ListLine(*conf); got != wantLine {
		t.Errorf("listing:\n got %s\nwant %s", got, wantLine)
	}
	if d := cmp.Diff(testWorkloadConf, string(conf.Data)); d != "" {
		t.Errorf("runner.conf (-want +got):\n%s", d)
	}
	r, _, root, err := LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	root.Close()
	c, err := spec.ParseConfig(string(conf.Data), r.Cmdline)
	if err != nil {
		t.Fatalf("the runner refuses the written configuration: %v", err)
	}
	w := r.Initrd.Workload
	got := []any{c.Image, c.ConfigDigest, c.Args, c.Env}
	if d := cmp.Diff([]any{w.Image, w.Config, w.Args, w.Env}, got); d != "" {
		t.Errorf("parsed workload (-recipe +runner):\n%s", d)
	}
}

// TestWorkloadRecords checks the initrd hook without a build: the record's
// path, mode and bytes, and that a recipe without a workload adds nothing.
func TestWorkloadRecords(t *testing.T) {
	r, err := ParseRecipe([]byte(validRecipe))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := InitrdRecords(r, map[string][]byte{"ovmf": []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(recs, func(rec initrd.Record) bool { return rec.Path == "etc/mkcvm/runner.conf" })
	if i < 0 {
		t.Fatal("no etc/mkcvm/runner.conf record")
	}
	wantConf := "mkcvm.image=registry.example/app@sha256:" + strings.Repeat("7", 64) + "\n" +
		"mkcvm.config=sha256:" + strings.Repeat("8", 64) + "\nmkcvm.env=A=b\n"
	if d := cmp.Diff(initrd.File("etc/mkcvm/runner.conf", 0o644, []byte(wantConf)), recs[i]); d != "" {
		t.Errorf("record (-want +got):\n%s", d)
	}
	r.Initrd.Workload = nil
	recs, err = InitrdRecords(r, map[string][]byte{"ovmf": []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(recs, func(rec initrd.Record) bool { return strings.HasPrefix(rec.Path, "etc/mkcvm") }) {
		t.Error("a recipe without a workload got a runner configuration")
	}
}

// TestWorkloadHookRefusesHandWritten checks the hook itself (not only the
// validator) refuses a recipe file in the configuration's place.
func TestWorkloadHookRefusesHandWritten(t *testing.T) {
	for _, p := range []string{"etc/mkcvm/runner.conf", "etc/mkcvm", "etc"} {
		r := &Recipe{Initrd: InitrdSpec{
			Files:    []InitrdFile{{Path: "etc/motd", Mode: "0644"}, {Path: p, Mode: "0644"}},
			Workload: &Workload{Image: testWorkloadImage, Config: testWorkloadConfig},
		}}
		_, err := workloadRecords(r, nil)
		want := `initrd.file[1]: path: "` + p + `" conflicts with [initrd.workload]`
		if err == nil || !errors.Is(err, ErrRecipe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want a RecipeError containing %q", p, err, want)
		}
	}
}

// TestWorkloadRecipeErrors edits validRecipe (recipe_test.go) into recipes
// the workload checks refuse.
func TestWorkloadRecipeErrors(t *testing.T) {
	const cfg = `config = "sha256:8888888888888888888888888888888888888888888888888888888888888888"`
	const env = `env = ["A=b"]`
	const cmdline = `cmdline = "console=ttyS0 panic=-1"`
	for _, tc := range []struct{ name, old, new, want string }{
		{"config missing", cfg, ``, `initrd.workload: config: must be the image config blob's digest, sha256:<64 lowercase hex>, got ""`},
		{"config bare hex", cfg, `config = "8888888888888888888888888888888888888888888888888888888888888888"`, `initrd.workload: config: must be`},
		{"config upper", cfg, `config = "sha256:A888888888888888888888888888888888888888888888888888888888888888"`, `initrd.workload: config: must be`},
		{"config sha512", cfg, `config = "sha512:8888888888888888888888888888888888888888888888888888888888888888"`, `initrd.workload: config: must be`},
		{"hand-written conf", `path = "etc/motd"`, `path = "etc/mkcvm/runner.conf"`,
			`initrd.file[0]: path: "etc/mkcvm/runner.conf" conflicts with [initrd.workload], which writes /etc/mkcvm/runner.conf`},
		{"file over its folder", `path = "etc/motd"`, `path = "etc/mkcvm"`, `initrd.file[0]: path: "etc/mkcvm" conflicts with [initrd.workload]`},
		{"arg line break", env, env + "\nargs = [\"a\", \"b\\nmkcvm.tee=none\"]", `initrd.workload: args[1]: "b\nmkcvm.tee=none" holds a line break`},
		{"env trailing space", env, `env = ["A=b "]`, `initrd.workload: env[0]: "A=b " ends in white space`},
		{"cmdline image", cmdline, `cmdline = "console=ttyS0 mkcvm.image=registry.example/app@sha256:` + strings.Repeat("7", 64) + `"`,
			`cmdline: with [initrd.workload] in /etc/mkcvm/runner.conf the runner would refuse its configuration: runner configuration: mkcvm.image set both in /etc/mkcvm/runner.conf and kernel command line`},
		{"cmdline arg", cmdline, `cmdline = "console=ttyS0 mkcvm.arg=--debug"`, `cmdline: mkcvm.image, mkcvm.config, mkcvm.arg and mkcvm.env belong in [initrd.workload]`},
		{"cmdline env twice", cmdline, `cmdline = "console=ttyS0 mkcvm.env=B=c"`, `mkcvm.env set both in`},
		{"cmdline unknown key", cmdline, `cmdline = "console=ttyS0 mkcvm.nett=dhcp"`, `the runner would refuse its configuration: runner configuration: kernel command line: mkcvm.nett: unknown key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecipe([]byte(edit(t, tc.old, tc.new)))
			if err == nil || !errors.Is(err, ErrRecipe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRecipe err = %v\nwant an ErrRecipe containing %q", err, tc.want)
			}
		})
	}
	// Runner settings other than the workload's belong on the command line.
	ok := edit(t, cmdline, `cmdline = "console=ttyS0 mkcvm.net=dhcp mkcvm.tee=tpm mkcvm.module=/lib/modules/virtio.ko mkcvm.kbs=http://10.0.2.100:8080 mkcvm.kbs_required=1"`)
	if _, err := ParseRecipe([]byte(ok)); err != nil {
		t.Errorf("runner settings on the command line: %v", err)
	}
}
