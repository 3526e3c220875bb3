// Package runnertest holds test helpers for the runner: building small
// images from in-memory files and pushing them by digest to a registry.
package runnertest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
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
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of a test layer.
type File struct {
	Name     string
	Body     []byte
	Mode     int64
	Typeflag byte
	Linkname string
}

// Layer returns a gzip-compressed tar layer holding files, with fixed
// metadata (uid/gid 0, mtime 0) so its digest is stable.
func Layer(t testing.TB, files []File) v1.Layer {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, Typeflag: f.Typeflag, Linkname: f.Linkname, Size: int64(len(f.Body)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.Body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write(tb.Bytes())
	zw.Close()
	return static.NewLayer(gz.Bytes(), types.OCILayer)
}

// Image builds an OCI image from layers and a config.
func Image(t testing.TB, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = cfg
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.History = nil
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Push writes img to host/repo by digest only and returns the digest
// reference and the config digest.
func Push(t testing.TB, host, repo string, img v1.Image) (ref, configDigest string) {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.NewDigest(fmt.Sprintf("%s/%s@%s", host, repo, d), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("pushing %s: %v", r, err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return r.String(), cd.String()
}

// Registry starts go-containerregistry's in-memory registry on 127.0.0.1.
// wrap, if not nil, wraps its handler (e.g. to serve wrong bytes). It returns
// the host:port.
func Registry(t testing.TB, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

// Tamper returns a wrapper that answers GETs of the blob or manifest with
// the given digest with body instead (after the push went through).
func Tamper(digest string, body []byte) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/"+digest) {
				if strings.Contains(r.URL.Path, "/manifests/") {
					w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
					w.Header().Set("Docker-Content-Digest", digest)
				}
				w.Write(body)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

var (
	helloOnce sync.Once
	helloBin  []byte
	helloErr  error
)

// Hello builds the static test workload (runnertest/hello) once per process.
func Hello(t testing.TB) []byte {
	t.Helper()
	helloOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mkcvm-hello")
		if err != nil {
			helloErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "hello")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/mkcvm/mkcvm/initrd/runner/runnertest/hello")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			helloErr = fmt.Errorf("building hello: %w\n%s", err, b)
			return
		}
		helloBin, helloErr = os.ReadFile(out)
	})
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	return helloBin
}

// HelloImage is an image whose entrypoint is the hello workload, with
// GREETING and HELLO_EXIT in its config Env and a passwd file for user
// "app" (uid 1000).
func HelloImage(t testing.TB) v1.Image {
	l := Layer(t, []File{
		{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bin/hello", Body: Hello(t), Mode: 0o755},
		{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "etc/passwd", Body: []byte("root:x:0:0:root:/root:/bin/hello\napp:x:1000:1000:app:/:/bin/hello\n")},
		{Name: "etc/group", Body: []byte("root:x:0:\napp:x:1000:\n")},
	})
	return Image(t, HelloImageConfig(), l)
}

// HelloImageConfig is the config of HelloImage.
func HelloImageConfig() v1.Config {
	return v1.Config{Entrypoint: []string{"hello"}, Cmd: []string{"default-arg"},
		Env: []string{"PATH=/bin", "GREETING=from-image", "HELLO_EXIT=3"}, User: "app", WorkingDir: "/"}
}
