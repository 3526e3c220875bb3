package initrd

import (
	"bytes"
	"debug/elf"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func moduleDir(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
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
