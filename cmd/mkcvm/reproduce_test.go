package main

import (
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/manifest"
)

// benchBundle builds the default recipe (TPM, SNP and TDX shapes) when its
// .debs are in $MKCVM_DEBDIR, else the small SNP-only test recipe.
func benchBundle(b testing.TB) (string, *manifest.Manifest) {
	b.Helper()
	out := filepath.Join(b.TempDir(), "out")
	if dir := os.Getenv("MKCVM_DEBDIR"); dir != "" {
		r, text, root, err := builder.LoadRecipe("../../recipes/debian-bookworm.toml")
		if err != nil {
			b.Fatal(err)
		}
		defer root.Close()
		wd, _ := os.Getwd()
		cacheDir, _ := builder.DefaultCacheDir()
		_, err = builder.Build(b.Context(), r, builder.BuildOptions{Out: out, RecipeText: text, ModuleDir: filepath.Join(wd, "..", ".."),
			Cache: &builder.Cache{Dir: cacheDir}, Fetcher: builder.NewSourceFetcher(r, root, filepath.SplitList(dir))})
		if err != nil {
			b.Logf("default recipe not buildable here (%v); using the small recipe", err)
			out = ""
		}
	}
	if out == "" || !fileExists(filepath.Join(out, "manifest.json")) {
		_, out = cliBundleB(b)
	}
	raw, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		b.Fatal(err)
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		b.Fatal(err)
	}
	return out, m
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// BenchmarkReproduceTier1 recomputes every reference value of a bundle
// (target: the default recipe in under 1 s on one core). Compare with
// BenchmarkReproduceHashFloor, one SHA-256 pass over the same artifacts,
// which tier 1 must do anyway.
func BenchmarkReproduceTier1(b *testing.B) {
	dir, m := benchBundle(b)
	b.ResetTimer()
	for b.Loop() {
		rows, err := recomputeValues(dir, m, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rows {
			if !r.Match {
				b.Fatalf("%s %s differs", r.Shape, r.Value)
			}
		}
	}
}

func BenchmarkReproduceHashFloor(b *testing.B) {
	dir, m := benchBundle(b)
	b.ResetTimer()
	for b.Loop() {
		for _, a := range m.Artifacts {
			f, err := os.Open(filepath.Join(dir, a.Name))
			if err != nil {
				b.Fatal(err)
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
		}
	}
}

// TestReproduceDefaultBundle recomputes every value of the default recipe's
// bundle from the bundle alone (no --input): the captured platform profile
// the tpm-q35 shape uses travels in the bundle.
func TestReproduceDefaultBundle(t *testing.T) {
	if os.Getenv("MKCVM_DEBDIR") == "" {
		t.Skip("needs the default recipe's .debs in MKCVM_DEBDIR (make debs)")
	}
	dir, m := benchBundle(t)
	if m.Recipe.Name != "debian-bookworm" {
		t.Fatalf("built recipe %q, want the default recipe", m.Recipe.Name)
	}
	rows, err := recomputeValues(dir, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	var pcr0 bool
	for _, r := range rows {
		if !r.Match {
			t.Errorf("%s %s: published %s, recomputed %s: %s", r.Shape, r.Value, r.Published, r.Recomputed, r.Detail)
		}
		if r.Shape == "tpm-q35" && strings.HasPrefix(r.Value, "tpm.pcr0.") {
			pcr0 = true
		}
	}
	if !pcr0 {
		t.Errorf("no PCR 0 row among %d rows: the profile-based value was not recomputed", len(rows))
	}
}
