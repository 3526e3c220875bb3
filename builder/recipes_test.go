package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/mkcvm/mkcvm/manifest"
)

// repoDir is the module root (parent of builder/).
func repoDir(t testing.TB) string {
	t.Helper()
	if repoRoot == "" {
		t.Fatal("repository root unknown")
	}
	return repoRoot
}

// debDirs returns $MKCVM_DEBDIR, skipping the test without it (failing
// under MKCVM_REQUIRE_VM=1, as `make test` sets).
func debDirs(t testing.TB) []string {
	t.Helper()
	d := os.Getenv("MKCVM_DEBDIR")
	if d == "" {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal("MKCVM_DEBDIR is not set (run `make debs`)")
		}
		t.Skip("MKCVM_DEBDIR is not set (run `make debs`)")
	}
	return filepath.SplitList(d)
}

// TestRecipes parses, validates and dry-run builds every recipe in recipes/.
func TestRecipes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoDir(t), "recipes", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recipes found: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r, text, root, err := LoadRecipe(f)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			if testing.Short() {
				return
			}
			if r.Firmware.Image == "" && r.Firmware.Code == "" {
				// Firmware built from source: its build (many minutes of
				// edk2 compiles) is tested by the firmware tests.
				t.Logf("%s: firmware built from source; parsed and validated, build not dry-run here", filepath.Base(f))
				return
			}
			debs := debDirs(t)
			res, err := Build(t.Context(), r, BuildOptions{
				RecipeText: text, ModuleDir: repoDir(t), Cache: sharedCache(t),
				Fetcher: NewSourceFetcher(r, root, debs), DryRun: true,
				RecipeDir: filepath.Dir(f), DebDirs: debs,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := manifest.Validate(res.Manifest); err != nil {
				t.Error(err)
			}
			if len(res.Manifest.Shapes) != len(r.Shapes) {
				t.Errorf("%d shapes in the manifest, want %d", len(res.Manifest.Shapes), len(r.Shapes))
			}
		})
	}
}

// sharedCache is one cache for the tests of this package run, so the
// initrd programs compile once.
func sharedCache(t testing.TB) *Cache {
	t.Helper()
	if d := os.Getenv("MKCVM_TEST_CACHE"); d != "" {
		return &Cache{Dir: d}
	}
	return &Cache{Dir: testCacheDir}
}

var testCacheDir, repoRoot string

func TestMain(m *testing.M) {
	// go test starts in the package folder; tests may chdir later.
	if wd, err := os.Getwd(); err == nil {
		repoRoot = filepath.Dir(wd)
	}
	d, err := os.MkdirTemp("", "mkcvm-builder-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testCacheDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}
