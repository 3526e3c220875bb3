package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/manifest"
)

// snpX64KAT is sev-snp-measure 0.0.13's launch digest of
// measure/testdata/snp/ovmf_OvmfX64_suffix.bin for --mode snp --vcpus 1
// --vcpu-type EPYC-Milan --vmm-type QEMU (measure/testdata/snp/kat.tsv;
// provenance in testdata/provenance/snp.md). That firmware has no
// kernel-hashes section, so the kernel does not enter the digest.
const snpX64KAT = "f7dfe301e4b1b73b02932cfa3792f883dbb8f2a714e01e5dcbb35ecaf1c93f3cf5d39f5e943d1de599d239bdc90f8d27"

// cliBundle builds a small recipe (real OVMF suffix, synthetic kernel, one
// SNP shape) with builder.Build and returns the recipe path and bundle dir.
func cliBundle(t *testing.T) (string, string) { return cliBundleB(t) }

// cliBundleB is cliBundle for benchmarks too: tb owns the temp dir.
func cliBundleB(tb testing.TB) (string, string) {
	t := tb
	t.Helper()
	dir := t.TempDir()
	fw, err := os.ReadFile("../../measure/testdata/snp/ovmf_OvmfX64_suffix.bin")
	if err != nil {
		t.Fatal(err)
	}
	kernel := []byte(strings.Repeat("synthetic kernel ", 64))
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	os.WriteFile(filepath.Join(dir, "OVMF.fd"), fw, 0o644)
	os.WriteFile(filepath.Join(dir, "bzImage"), kernel, 0o644)
	recipe := fmt.Sprintf(`name = "cli-test"
epoch = 1767225600
cmdline = "console=ttyS0"
kernel = "kernel"

[firmware]
image = "fw"

[inputs.fw]
file = "OVMF.fd"
sha256 = %q
size = %d

[inputs.kernel]
file = "bzImage"
sha256 = %q
size = %d

[initrd]
compression = "gzip"

[[initrd.file]]
path = "etc/hello"
contents = "hello\n"
mode = "0644"

[[shape]]
name = "snp1"
platform = "snp"
vcpus = 1
vcpu_sig = "0xa00f11"
vmm = "qemu"
`, sum(fw), len(fw), sum(kernel), len(kernel))
	path := filepath.Join(dir, "recipe.toml")
	os.WriteFile(path, []byte(recipe), 0o644)
	r, text, root, err := builder.LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out := filepath.Join(dir, "out")
	wd, _ := os.Getwd()
	if _, err := builder.Build(t.Context(), r, builder.BuildOptions{Out: out, RecipeText: text,
		ModuleDir: filepath.Join(wd, "..", ".."), Fetcher: builder.NewSourceFetcher(r, root, nil)}); err != nil {
		t.Fatalf("build: %v", err)
	}
	return path, out
}

func exitCodeOf(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}

func TestManifestCLI(t *testing.T) {
	recipePath, bundle := cliBundle(t)
	keys := t.TempDir()
	var must func(args ...string) string
	mustT := func(t *testing.T) func(args ...string) string {
		return func(args ...string) string {
			t.Helper()
			out, stderr, err := runMkcvm(args...)
			if err != nil {
				t.Fatalf("mkcvm %s: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			return out
		}
	}
	must = mustT(t)
	must("keygen", "--out", filepath.Join(keys, "owner"))
	must("keygen", "--type", "ed25519", "--out", filepath.Join(keys, "other"))
	pub := filepath.Join(keys, "owner.pub")
	signed := strings.TrimSpace(must("sign", "--key", filepath.Join(keys, "owner.key"), "--valid-for", "8760h", filepath.Join(bundle, "manifest.json")))
	if signed != filepath.Join(bundle, "manifest.sigstore.json") {
		t.Errorf("sign printed %q", signed)
	}
	at := "--at=2026-06-01T00:00:00Z"
	if out := must("verify-manifest", "--key", pub, at, "--artifacts", bundle, signed); !strings.Contains(out, "verified sha256:") {
		t.Errorf("verify-manifest printed %q", out)
	}

	t.Run("verify-manifest rejects", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			args []string
			msg  string
		}{
			{"other key", []string{"--key", filepath.Join(keys, "other.pub"), at, signed}, "signature verification failed"},
			{"expired", []string{"--key", pub, "--at=2027-06-01T00:00:00Z", signed}, "manifest expired"},
			{"not a bundle", []string{"--key", pub, at, filepath.Join(bundle, "manifest.json")}, "malformed signed manifest"},
		} {
			_, _, err := runMkcvm(append([]string{"verify-manifest"}, tc.args...)...)
			if exitCodeOf(err) != 1 || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("%s: exit %d, error %v; want exit 1 mentioning %q", tc.name, exitCodeOf(err), err, tc.msg)
			}
		}
	})

	t.Run("export", func(t *testing.T) {
		for _, format := range []string{"rvps", "constellation", "in-toto", "corim"} {
			args := []string{"export", "--format", format, "--pub", pub, at, signed}
			if format == "corim" {
				args = append(args, "--key", filepath.Join(keys, "owner.key"))
			}
			out, _, err := runMkcvm(args...)
			switch {
			case format == "constellation":
				// The bundle has only an SNP shape: no Constellation variant.
				if err == nil {
					t.Errorf("constellation export of an SNP-only manifest succeeded")
				}
			case err != nil || len(out) == 0:
				t.Errorf("export %s: %v", format, err)
			}
		}
		if _, _, err := runMkcvm("export", "--format", "rvps", signed); err == nil {
			t.Errorf("export of a signed manifest without --pub succeeded")
		}
	})

	t.Run("reproduce dir", func(t *testing.T) {
		must := mustT(t)
		out := must("reproduce", "--key", pub, at, bundle)
		if !strings.Contains(out, "snp.launch_digest") || strings.Contains(out, " NO") {
			t.Errorf("reproduce:\n%s", out)
		}
		raw, _ := os.ReadFile(filepath.Join(bundle, "manifest.json"))
		m, err := manifest.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		// The published value is the independent known answer.
		if got := m.Shapes[0].SNP.LaunchDigest; got != snpX64KAT {
			t.Errorf("published launch digest %s, want sev-snp-measure's %s", got, snpX64KAT)
		}
		// A doctored copy of the bundle: reproduce names the value.
		doctored := t.TempDir()
		for _, a := range m.Artifacts {
			b, _ := os.ReadFile(filepath.Join(bundle, a.Name))
			os.WriteFile(filepath.Join(doctored, a.Name), b, 0o644)
		}
		m.Shapes[0].SNP.LaunchDigest = strings.Repeat("ab", 48)
		enc, _ := manifest.Encode(m)
		os.WriteFile(filepath.Join(doctored, "manifest.json"), enc, 0o644)
		out, _, err = runMkcvm("reproduce", doctored)
		if exitCodeOf(err) != 1 || !strings.Contains(out, "snp.launch_digest") || !strings.Contains(err.Error(), "snp1 snp.launch_digest") {
			t.Errorf("doctored bundle: exit %d err %v\n%s", exitCodeOf(err), err, out)
		}
	})

	t.Run("reproduce rebuild", func(t *testing.T) {
		must := mustT(t)
		out := must("reproduce", "--rebuild", "--recipe", recipePath, "--cache", t.TempDir(), bundle)
		if !strings.Contains(out, "artifact vmlinuz") || strings.Contains(out, " NO") {
			t.Errorf("reproduce --rebuild:\n%s", out)
		}
		// Without the recipe folder: the file inputs come from the bundle.
		out = must("reproduce", "--rebuild", "--cache", t.TempDir(), bundle)
		if !strings.Contains(out, "manifest.json") || strings.Contains(out, " NO") {
			t.Errorf("reproduce --rebuild from the bundle alone:\n%s", out)
		}
	})

	t.Run("publish fetch", func(t *testing.T) {
		must := mustT(t)
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		defer srv.Close()
		u, _ := url.Parse(srv.URL)
		ref := u.Host + "/cvm/cli-test:v1"
		out := must("publish", "--insecure", bundle, ref)
		if !strings.Contains(out, "@sha256:") {
			t.Errorf("publish printed %q", out)
		}
		dest := filepath.Join(t.TempDir(), "fetched")
		must("fetch", "--insecure", "--key", pub, at, "-o", dest, ref)
		if _, err := os.Stat(filepath.Join(dest, "vmlinuz")); err != nil {
			t.Errorf("fetch did not write vmlinuz: %v", err)
		}
		_, _, err := runMkcvm("fetch", "--insecure", "--key", filepath.Join(keys, "other.pub"), at, ref)
		if exitCodeOf(err) != 1 || !errors.Is(err, manifest.ErrSignature) {
			t.Errorf("fetch with another key: exit %d, %v", exitCodeOf(err), err)
		}
		if out := must("reproduce", "--insecure", "--key", pub, at, ref); strings.Contains(out, " NO") {
			t.Errorf("reproduce REF:\n%s", out)
		}
	})
}
