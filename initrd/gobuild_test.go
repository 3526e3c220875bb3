package initrd

import (
	"bytes"
	"debug/elf"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func moduleDir(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd() // go test runs in the package folder
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

func TestGoBuildCachedAndStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go programs")
	}
	cache := t.TempDir()
	g := GoBuild{ModuleDir: moduleDir(t), CacheDir: cache, Init: "github.com/mkcvm/mkcvm/cmd/mkcvm-init",
		Commands: []string{"github.com/u-root/u-root/cmds/core/echo"}}
	// Host settings that must not leak into the build.
	t.Setenv("GOFLAGS", "-tags=leak")
	t.Setenv("GOAMD64", "v3")
	t.Setenv("GOEXPERIMENT", "")
	first, err := g.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached {
		t.Error("first build reported as cached")
	}
	if got := []string{first.Binaries[0].Path, first.Binaries[1].Path}; got[0] != "init" || got[1] != "bin/echo" {
		t.Errorf("paths = %v", got)
	}
	for _, b := range first.Binaries {
		f, err := elf.NewFile(bytes.NewReader(b.Data))
		if err != nil {
			t.Fatalf("%s: %v", b.Package, err)
		}
		if f.Machine != elf.EM_X86_64 {
			t.Errorf("%s: machine %v", b.Package, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked", b.Package)
			}
		}
		if bytes.Contains(b.Data, []byte(moduleDir(t))) {
			t.Errorf("%s: contains the host module path", b.Package)
		}
		if !bytes.Contains(b.Data, []byte("GOAMD64=v1")) || bytes.Contains(b.Data, []byte("-tags=leak")) {
			t.Errorf("%s: build settings leaked from the host", b.Package)
		}
	}
	mods, err := first.Modules()
	if err != nil || len(mods) == 0 {
		t.Fatalf("Modules() = %v, %v", mods, err)
	}
	start := time.Now()
	second, err := g.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("warm build took %s", time.Since(start))
	if !second.Cached || second.Key != first.Key {
		t.Errorf("second build: cached=%v key %s vs %s", second.Cached, second.Key, first.Key)
	}
	// A fresh cache gives identical bytes (the build itself is reproducible).
	g.CacheDir = t.TempDir()
	t.Setenv("GOCACHE", t.TempDir())
	third, err := g.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for i := range first.Binaries {
		if !bytes.Equal(first.Binaries[i].Data, third.Binaries[i].Data) {
			t.Errorf("%s differs between builds", first.Binaries[i].Package)
		}
	}
}

// TestGoBuildCacheKeyFollowsSources: editing a main-module source file
// invalidates the cached binary; an unrelated file does not.
func TestGoBuildCacheKeyFollowsSources(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles Go programs")
	}
	mod := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mod, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mod, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/m\n\ngo 1.26\n")
	write("lib/lib.go", "package lib\n\nconst Msg = \"one\"\n")
	write("cmd/hello/main.go", "package main\n\nimport \"example.com/m/lib\"\n\nfunc main() { println(lib.Msg) }\n")
	write("other/other.go", "package other\n")
	g := GoBuild{ModuleDir: mod, CacheDir: t.TempDir(), Init: "example.com/m/cmd/hello"}
	first, err := g.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	write("other/other.go", "package other\n\nconst X = 1\n")
	second, err := g.Build(t.Context())
	if err != nil || !second.Cached || second.Key != first.Key {
		t.Fatalf("unrelated edit: cached=%v key changed=%v err=%v", second != nil && second.Cached, second != nil && second.Key != first.Key, err)
	}
	write("lib/lib.go", "package lib\n\nconst Msg = \"two\"\n")
	third, err := g.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if third.Cached || third.Key == first.Key || bytes.Equal(third.Binaries[0].Data, first.Binaries[0].Data) {
		t.Errorf("editing an imported package did not rebuild: cached=%v", third.Cached)
	}
}
