package runner

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mkcvm/mkcvm/initrd/runner/runnertest"
)

func testImage(t *testing.T) v1.Image {
	l1 := runnertest.Layer(t, []runnertest.File{{Name: "bin/hello", Body: []byte("#!hello"), Mode: 0o755}})
	l2 := runnertest.Layer(t, []runnertest.File{{Name: "etc/motd", Body: []byte("hi")}})
	return runnertest.Image(t, v1.Config{Entrypoint: []string{"/bin/hello"}, Env: []string{"PATH=/bin"}}, l1, l2)
}

func TestPull(t *testing.T) {
	img := testImage(t)
	host := runnertest.Registry(t, nil)
	ref, cd := runnertest.Push(t, host, "test/hello", img)
	got, err := FetchImage(t.Context(), ref, PullOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.ConfigDigest != cd || got.ManifestDigest != ref[strings.LastIndex(ref, "@")+1:] {
		t.Errorf("digests = %s %s, want config %s and the reference's digest", got.ManifestDigest, got.ConfigDigest, cd)
	}
	if got.Config.Config.Entrypoint[0] != "/bin/hello" {
		t.Errorf("entrypoint = %q", got.Config.Config.Entrypoint)
	}
	dl := t.TempDir()
	files, err := got.FetchLayers(t.Context(), dl)
	if err != nil {
		t.Fatal(err)
	}
	rd := t.TempDir()
	root, err := os.OpenRoot(rd)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := got.ExtractLayers(root, files, ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rd, "etc/motd")); err != nil || string(b) != "hi" {
		t.Errorf("etc/motd = %q, %v", b, err)
	}
}

func TestPullRefusesTags(t *testing.T) {
	_, err := FetchImage(t.Context(), "127.0.0.1:1/test/hello:latest", PullOptions{Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "no digest") {
		t.Fatalf("err = %v, want a refusal naming the missing digest", err)
	}
}

// TestPullWrongDigest serves different bytes for the manifest, the config or
// a layer: the pull is refused and nothing is downloaded or extracted.
func TestPullWrongDigest(t *testing.T) {
	img := testImage(t)
	md, _ := img.Digest()
	cd, _ := img.ConfigName()
	ls, _ := img.Layers()
	ld, _ := ls[1].Digest()
	lb, _ := ls[0].Compressed()
	defer lb.Close()
	for _, tc := range []struct {
		name, digest string
		body         []byte
	}{
		{name: "manifest", digest: md.String(), body: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)},
		{name: "config", digest: cd.String(), body: []byte(`{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/evil"]}}`)},
		{name: "layer swapped for another layer", digest: ld.String(), body: mustRead(t, ls[0])},
		{name: "layer truncated", digest: ld.String(), body: []byte{0x1f, 0x8b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served bool
			host := runnertest.Registry(t, func(h httpHandler) httpHandler {
				return trackServed(runnertest.Tamper(tc.digest, tc.body)(h), tc.digest, &served)
			})
			ref, _ := runnertest.Push(t, host, "test/hello", img)
			dl := t.TempDir()
			err := func() error {
				got, err := FetchImage(t.Context(), ref, PullOptions{Insecure: true})
				if err != nil {
					return err
				}
				_, err = got.FetchLayers(t.Context(), dl)
				return err
			}()
			if !served {
				t.Fatal("the tampered object was never requested")
			}
			if err == nil {
				t.Fatal("pull succeeded with tampered bytes")
			}
			if !errors.Is(err, ErrDigest) && !strings.Contains(err.Error(), "digest") {
				t.Errorf("err = %v, want a digest mismatch", err)
			}
			t.Logf("refused: %v", err)
			if ents, _ := os.ReadDir(dl); len(ents) > 1 {
				t.Errorf("download dir holds %d files after refusal", len(ents))
			}
		})
	}
}
