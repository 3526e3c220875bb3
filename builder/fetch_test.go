package builder

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func pin(b []byte) Input { return Input{SHA256: hexSum(b), Size: int64(len(b))} }

func oneInput(name string, in Input) *Recipe { return &Recipe{Inputs: map[string]Input{name: in}} }

func TestResolveURL(t *testing.T) {
	body := bytes.Repeat([]byte("u"), 5000)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Write(body)
		case "/short":
			w.Header().Set("Content-Length", "5000")
			w.Write(body[:100]) // the connection closes early: a truncated download
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	f := &SourceFetcher{Client: srv.Client()}
	tests := []struct {
		name, path string
		want       string
		is         error
	}{
		{"ok", "/ok", "", nil},
		{"truncated", "/short", `input "x": url: reading: unexpected EOF`, nil},
		{"not found", "/nope", `input "x": url: input missing: GET ` + srv.URL + `/nope: 404 Not Found`, ErrMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := pin(body)
			in.URL = srv.URL + tc.path
			got, _, err := Resolve(t.Context(), oneInput("x", in), ResolveOptions{Cache: &Cache{Dir: t.TempDir()}, Fetcher: f})
			if tc.want == "" {
				if err != nil || !bytes.Equal(got["x"], body) {
					t.Fatalf("Resolve: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err is not %v", tc.is)
			}
		})
	}
}

func TestResolveCacheAndOffline(t *testing.T) {
	dir := t.TempDir()
	body := []byte("cached bytes")
	os.WriteFile(filepath.Join(dir, "f"), body, 0o644)
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	in := pin(body)
	in.File = "f"
	r := oneInput("f", in)
	cache := &Cache{Dir: t.TempDir()}
	// Offline with an empty cache: a clear error naming the input and lock.
	_, _, err = Resolve(t.Context(), r, ResolveOptions{Cache: cache, Offline: true, Fetcher: &SourceFetcher{Root: root}})
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), `input "f": sha256: input missing: `+in.SHA256) || !strings.Contains(err.Error(), "mkcvm lock") {
		t.Errorf("offline err = %v", err)
	}
	if _, sts, err := Resolve(t.Context(), r, ResolveOptions{Cache: cache, Fetcher: &SourceFetcher{Root: root}}); err != nil || sts[0].Cached {
		t.Fatalf("online: %v %+v", err, sts)
	}
	// Now offline works, from the cache, even with the source gone.
	os.Remove(filepath.Join(dir, "f"))
	got, sts, err := Resolve(t.Context(), r, ResolveOptions{Cache: cache, Offline: true})
	if err != nil || !sts[0].Cached || !bytes.Equal(got["f"], body) {
		t.Fatalf("offline from cache: %v %+v", err, sts)
	}
	// A corrupt cache entry is dropped, not served.
	os.WriteFile(cache.path(in.SHA256), []byte("cached bytez"), 0o644)
	if _, _, err := Resolve(t.Context(), r, ResolveOptions{Cache: cache, Offline: true}); !errors.Is(err, ErrMissing) {
		t.Errorf("corrupt cache entry: err = %v, want ErrMissing", err)
	}
	if _, err := os.Stat(cache.path(in.SHA256)); err == nil {
		t.Error("corrupt cache entry kept")
	}
}

// buildDeb makes a .deb with dpkg-deb (an independent producer) holding
// files, compressed with comp (xz, zstd, gzip).
func buildDeb(t *testing.T, dir, pkg, version, comp string, files map[string][]byte) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb not installed")
	}
	tree := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755)
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: amd64\nMaintainer: t <t@example.org>\nDescription: test\n", pkg, version)
	os.WriteFile(filepath.Join(tree, "DEBIAN", "control"), []byte(control), 0o644)
	for p, b := range files {
		fp := filepath.Join(tree, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(fp), 0o755)
		os.WriteFile(fp, b, 0o644)
	}
	out := filepath.Join(dir, fmt.Sprintf("%s_%s_amd64.deb", pkg, version))
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+comp, "-b", tree, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	return out
}

func TestResolveDeb(t *testing.T) {
	files := map[string][]byte{"usr/share/a/A.fd": bytes.Repeat([]byte("A"), 3000), "boot/vmlinuz": []byte("kernel")}
	for _, comp := range []string{"xz", "zstd", "gzip"} {
		t.Run(comp, func(t *testing.T) {
			debdir := t.TempDir()
			deb := filepath.Base(buildDeb(t, debdir, "pkg", "1.0-1", comp, files))
			a, k := pin(files["usr/share/a/A.fd"]), pin(files["boot/vmlinuz"])
			a.Deb, a.Path = deb, "usr/share/a/A.fd"
			k.Deb, k.Path = deb, "./boot/vmlinuz"
			r := &Recipe{Inputs: map[string]Input{"a": a, "k": k}}
			f := NewSourceFetcher(r, nil, []string{debdir})
			got, _, err := Resolve(t.Context(), r, ResolveOptions{Fetcher: f})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got["a"], files["usr/share/a/A.fd"]) || !bytes.Equal(got["k"], files["boot/vmlinuz"]) {
				t.Error("extracted members differ from the packaged files")
			}
			// A member the package does not have.
			m := pin([]byte("x"))
			m.Deb, m.Path = deb, "usr/share/missing"
			_, _, err = Resolve(t.Context(), oneInput("m", m), ResolveOptions{Fetcher: NewSourceFetcher(oneInput("m", m), nil, []string{debdir})})
			if !errors.Is(err, ErrNoMember) || !strings.Contains(err.Error(), `input "m": deb: `) {
				t.Errorf("missing member: %v", err)
			}
		})
	}
	// The deb itself is missing: the error names it, the deb folders and lock.
	m := pin([]byte("x"))
	m.Deb, m.Path = "gone_1_amd64.deb", "a"
	_, _, err := Resolve(t.Context(), oneInput("m", m), ResolveOptions{Fetcher: NewSourceFetcher(oneInput("m", m), nil, []string{"/nonexistent"})})
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), `input "m": deb: `) || !strings.Contains(err.Error(), "mkcvm lock") {
		t.Errorf("missing deb: %v", err)
	}
}

// TestResolveRealDeb extracts the default recipe's OVMF from the Debian
// package and compares it with dpkg-deb's extraction.
func TestResolveRealDeb(t *testing.T) {
	debs := debDirs(t)
	matches, _ := filepath.Glob(filepath.Join(debs[0], "ovmf_*_all.deb"))
	if len(matches) == 0 {
		t.Skip("no ovmf .deb")
	}
	tree := t.TempDir()
	if b, err := exec.Command("dpkg-deb", "-x", matches[0], tree).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, b)
	}
	want, err := os.ReadFile(filepath.Join(tree, "usr/share/OVMF/OVMF_VARS_4M.fd"))
	if err != nil {
		t.Fatal(err)
	}
	in := pin(want)
	in.Deb, in.Path = filepath.Base(matches[0]), "usr/share/OVMF/OVMF_VARS_4M.fd"
	got, _, err := Resolve(t.Context(), oneInput("v", in), ResolveOptions{Fetcher: NewSourceFetcher(oneInput("v", in), nil, debs)})
	if err != nil || !bytes.Equal(got["v"], want) {
		t.Fatalf("Resolve: %v", err)
	}
}

func tarLayer(t *testing.T, files map[string][]byte) v1.Layer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, p := range []string{"a/file", "a/other", "a/.wh.gone"} {
		data, ok := files[p]
		if !ok {
			continue
		}
		tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	l, err := tarball.LayerFromReader(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestResolveOCI(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	blob := []byte("an artifact layer: a kernel, say")
	artifact := static.NewLayer(blob, types.MediaType("application/vnd.example.kernel"))
	img, err := mutate.AppendLayers(empty.Image,
		tarLayer(t, map[string][]byte{"a/file": []byte("old"), "a/other": []byte("x"), "a/gone": []byte("g")}),
		tarLayer(t, map[string][]byte{"a/file": []byte("new"), "a/.wh.gone": nil}),
		artifact)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(host + "/test/img:v1")
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	ref := host + "/test/img@" + d.String()
	ld, _ := artifact.Digest()
	tests := []struct {
		name        string
		path, layer string
		want        []byte
		err         string
	}{
		{"layer", "", ld.String(), blob, ""},
		{"top file", "a/file", "", []byte("new"), ""},
		{"lower file", "a/other", "", []byte("x"), ""},
		{"whiteout", "a/gone", "", []byte("g"), `"a/gone" is deleted by a whiteout`},
		{"absent", "a/none", "", []byte("n"), "no such member"},
		{"absent layer", "", "sha256:" + strings.Repeat("0", 64), []byte("n"), "no such member"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := pin(tc.want)
			in.OCI, in.Path, in.Layer = ref, tc.path, tc.layer
			got, _, err := Resolve(t.Context(), oneInput("o", in), ResolveOptions{Fetcher: &SourceFetcher{}})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), `input "o": oci: `) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !bytes.Equal(got["o"], tc.want) {
				t.Fatalf("got %q, %v", got["o"], err)
			}
		})
	}
}

func TestParseArErrors(t *testing.T) {
	good := []byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n")
	if ms, err := ParseAr("x.deb", good); err != nil || len(ms) != 1 || ms[0].Name != "debian-binary" || string(ms[0].Data) != "2.0\n" {
		t.Fatalf("ParseAr(good) = %+v, %v", ms, err)
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"magic", []byte("!<arc>\n"), `x.deb: offset 0x0: ar magic: "!<arc>\n", want "!<arch>\n"`},
		{"short header", good[:30], "x.deb: offset 0x8: ar header: 22 bytes left, need 60"},
		{"fmag", bytes.Replace(good, []byte("`\n"), []byte("xx"), 1), `x.deb: offset 0x42: ar_fmag: "xx", want "` + "`" + `\n"`},
		{"size", bytes.Replace(good, []byte("  4         `"), []byte("  99        `"), 1), `x.deb: offset 0x38: ar_size: "99": not a size within the 4 bytes left`},
		{"size text", bytes.Replace(good, []byte("  4         `"), []byte("  -4        `"), 1), `x.deb: offset 0x38: ar_size: "-4"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAr("x.deb", tc.b)
			var ae *ArchiveError
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParseAr: never panics; members lie inside the input, in order.
func FuzzParseAr(f *testing.F) {
	f.Add([]byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		ms, err := ParseAr("fuzz", b)
		if err != nil {
			return
		}
		last := int64(0)
		for _, m := range ms {
			if m.Offset < last || m.Offset+int64(len(m.Data)) > int64(len(b)) {
				t.Fatalf("member %q at 0x%x (+%d) outside the input", m.Name, m.Offset, len(m.Data))
			}
			if !bytes.Equal(b[m.Offset:m.Offset+int64(len(m.Data))], m.Data) {
				t.Fatal("member data is not the input slice")
			}
			last = m.Offset + int64(len(m.Data))
		}
	})
}
