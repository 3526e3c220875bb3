package builder

import (
	"path/filepath"
	"testing"
)

// BenchmarkWarmRebuild rebuilds the default recipe with every input and
// compiled binary cached (target: under 2 s per build). The physical
// floor is hashing and writing the ~17 MB bundle once.
func BenchmarkWarmRebuild(b *testing.B) {
	debs := debDirs(b)
	path := filepath.Join(repoDir(b), "recipes", "debian-bookworm.toml")
	r, text, root, err := LoadRecipe(path)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	cache := &Cache{Dir: b.TempDir()}
	out := filepath.Join(b.TempDir(), "bundle")
	o := BuildOptions{Out: out, RecipeText: text, ModuleDir: repoDir(b), Cache: cache, Fetcher: NewSourceFetcher(r, root, debs)}
	if _, err := Build(b.Context(), r, o); err != nil { // warm the caches
		b.Fatal(err)
	}
	o.Offline = true
	for b.Loop() {
		if _, err := Build(b.Context(), r, o); err != nil {
			b.Fatal(err)
		}
	}
}
