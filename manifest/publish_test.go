package manifest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
)

// memBlobs is a registry blob store the test can tamper with.
type memBlobs struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (b *memBlobs) Get(_ context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[h.String()]
	if !ok {
		return nil, registry.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(d)), nil
}

func (b *memBlobs) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.m[h.String()]
	if !ok {
		return 0, registry.ErrNotFound
	}
	return int64(len(d)), nil
}

func (b *memBlobs) Put(_ context.Context, _ string, h v1.Hash, rc io.ReadCloser) error {
	d, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[h.String()] = d
	return nil
}

func (b *memBlobs) flip(h string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[h][0] ^= 1
}

// startGGCR serves go-containerregistry's registry on 127.0.0.1 and
// returns its host:port.
func startGGCR(t *testing.T, referrers bool, blobs *memBlobs) string {
	t.Helper()
	opts := []registry.Option{registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0))}
	if blobs != nil {
		opts = append(opts, registry.WithBlobHandler(blobs))
	}
	srv := httptest.NewServer(registry.New(opts...))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

func ociClient() *manifest.OCIRegistry {
	return &manifest.OCIRegistry{Name: []name.Option{name.Insecure}}
}

func publishSample(t *testing.T, host string, k testKey, signed []byte) (*manifest.Published, string) {
	t.Helper()
	dir := manifesttest.WriteDir(t)
	p, err := ociClient().Publish(t.Context(), os.DirFS(dir), signed, host+"/mkcvm/sample:v1")
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return p, host + "/mkcvm/sample:v1"
}

func TestPublishFetch(t *testing.T) {
	for _, tc := range []struct {
		name      string
		referrers bool
	}{{"referrers API", true}, {"fallback tag", false}} {
		t.Run(tc.name, func(t *testing.T) {
			host := startGGCR(t, tc.referrers, nil)
			checkPublishFetch(t, host, tc.referrers)
		})
	}
}

func checkPublishFetch(t *testing.T, host string, referrers bool) {
	k := newKey(t)
	signed := signSample(t, k, nil)
	p, ref := publishSample(t, host, k, signed)
	_, wantDesc, _ := manifest.BundleOCIManifest(manifesttest.Sample())
	if p.Bundle.DigestStr() != wantDesc.Digest.String() {
		t.Errorf("published digest %s, want %s (signed subject)", p.Bundle.DigestStr(), wantDesc.Digest)
	}
	if !referrers {
		fallback := p.Bundle.Context().Tag(strings.Replace(p.Bundle.DigestStr(), ":", "-", 1))
		if _, err := remote.Get(fallback); err != nil {
			t.Errorf("fallback tag %s: %v", fallback, err)
		}
	}
	dest := filepath.Join(t.TempDir(), "out")
	f, err := ociClient().Fetch(t.Context(), ref, pubOf(t, k), manifest.VerifyOptions{Now: now}, dest)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	wantDigest, _ := manifest.Digest(manifesttest.Sample())
	if f.Signed.Digest != wantDigest {
		t.Errorf("fetched manifest %s, want %s", f.Signed.Digest, wantDigest)
	}
	for name, want := range manifesttest.Files() {
		got, err := os.ReadFile(filepath.Join(dest, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("fetched %s differs (err %v)", name, err)
		}
	}
	if _, err := ociClient().Fetch(t.Context(), ref, pubOf(t, newKey(t)), manifest.VerifyOptions{Now: now}, ""); !errors.Is(err, manifest.ErrSignature) {
		t.Errorf("Fetch with another key: %v, want ErrSignature", err)
	}
}

func TestFetchTamperedLayer(t *testing.T) {
	blobs := &memBlobs{m: map[string][]byte{}}
	host := startGGCR(t, true, blobs)
	k := newKey(t)
	_, ref := publishSample(t, host, k, signSample(t, k, nil))
	kernel := manifesttest.Sample().Artifacts[1]
	blobs.flip("sha256:" + kernel.SHA256)
	dest := t.TempDir()
	_, err := ociClient().Fetch(t.Context(), ref, pubOf(t, k), manifest.VerifyOptions{Now: now}, dest)
	if err == nil || !strings.Contains(err.Error(), "vmlinuz") {
		t.Fatalf("Fetch of a tampered layer: %v, want an error naming vmlinuz", err)
	}
	if _, err := os.Stat(filepath.Join(dest, "vmlinuz")); err == nil {
		t.Errorf("tampered vmlinuz was written to the destination")
	}
}

func TestFetchReplayedSuperseded(t *testing.T) {
	host := startGGCR(t, true, nil)
	k := newKey(t)
	older := signSample(t, k, nil)
	oldDigest, _ := manifest.Digest(manifesttest.Sample())
	newer := signSample(t, k, func(m *manifest.Manifest) {
		m.Validity = manifest.NewValidity(m.Epoch, 365*24*time.Hour)
		m.Supersedes = []string{oldDigest}
	})
	_, ref := publishSample(t, host, k, newer)
	// An attacker re-attaches the older signed manifest.
	publishSample(t, host, k, older)
	f, err := ociClient().Fetch(t.Context(), ref, pubOf(t, k), manifest.VerifyOptions{Now: now}, "")
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if f.Signed.Digest == oldDigest {
		t.Fatalf("Fetch chose the superseded manifest")
	}
	if len(f.Rejected) != 1 || !errors.Is(f.Rejected[0], manifest.ErrSuperseded) {
		t.Errorf("rejected %v, want the older manifest as superseded", f.Rejected)
	}
}

// TestCosignVerifyAttestation checks the registry copy with cosign, on
// registries with and without the referrers API.
func TestCosignVerifyAttestation(t *testing.T) {
	cosign := manifesttest.Cosign(t)
	for _, tc := range []struct {
		name    string
		start   func(t *testing.T) string
		keyType string
	}{
		{"ggcr referrers API", func(t *testing.T) string { return startGGCR(t, true, nil) }, manifest.KeyECDSAP256},
		{"ggcr fallback tag, Ed25519", func(t *testing.T) string { return startGGCR(t, false, nil) }, manifest.KeyEd25519},
		{"docker-registry", startDockerRegistry, manifest.KeyECDSAP256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			host := tc.start(t)
			k := newKey(t, tc.keyType)
			p, _ := publishSample(t, host, k, signSample(t, k, nil))
			dir := t.TempDir()
			pub := filepath.Join(dir, "key.pub")
			os.WriteFile(pub, k.pub, 0o644)
			other := filepath.Join(dir, "other.pub")
			os.WriteFile(other, newKey(t, tc.keyType).pub, 0o644)
			run := func(key string) error {
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
				defer cancel()
				cmd := exec.CommandContext(ctx, cosign, "verify-attestation", "--key", key, "--insecure-ignore-tlog",
					"--allow-http-registry", "--type", manifest.PredicateType, p.Bundle.String())
				cmd.Env = append(os.Environ(), "HOME="+dir, "TUF_ROOT="+dir, "SIGSTORE_NO_CACHE=1")
				out, err := cmd.CombinedOutput()
				if len(out) > 600 {
					out = out[:600]
				}
				t.Logf("cosign verify-attestation (key %s): %s", filepath.Base(key), out)
				return err
			}
			if err := run(pub); err != nil {
				t.Errorf("cosign rejected the registry copy: %v", err)
			}
			if run(other) == nil {
				t.Errorf("cosign accepted another key")
			}
		})
	}
}

// startDockerRegistry runs Debian's docker-registry (distribution 2.8, no
// referrers API) on 127.0.0.1 with a temporary config and storage.
func startDockerRegistry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry not installed (apt-get install docker-registry)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yml")
	os.WriteFile(cfg, []byte("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "+filepath.Join(dir, "data")+"\nhttp:\n  addr: "+addr+"\n"), 0o644)
	cmd := exec.Command(bin, "serve", cfg)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := range 400 {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr
		}
		if i == 399 {
			t.Fatalf("docker-registry did not come up on %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return addr
}

func TestPublishFetchDockerRegistry(t *testing.T) {
	host := startDockerRegistry(t)
	checkPublishFetch(t, host, false)
}
