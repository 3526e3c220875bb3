package runner

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type tent struct {
	name, link, body string
	typ              byte
	mode             int64
	size             int64 // header size override
	pax              map[string]string
}

func mkTar(t testing.TB, ents []tent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), PAXRecords: e.pax, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("header %q: %v", e.name, err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// listing returns "path type" lines for everything under dir.
func listing(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" "+d.Type().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExtractHostile(t *testing.T) {
	big := strings.Repeat("x", 2<<20)
	bigPAX := []byte(fmt.Sprintf("%d comment=%s\n", 2<<20+len(" comment=\n")+7, big))
	for _, tc := range []struct {
		name     string
		ents     func(outside string) []tent
		raw      []byte   // a hand-made archive instead of ents
		rejected []string // entry names that must be reported
		stop     bool     // the layer must stop with a non-rejection error
		inRoot   []string // paths that must exist inside the root afterwards
	}{
		{name: "dotdot", ents: func(string) []tent {
			return []tent{{name: "../escape", body: "x"}, {name: "a/../../escape2", body: "x"}}
		},
			rejected: []string{"../escape", "a/../../escape2"}},
		{name: "absolute path", ents: func(o string) []tent { return []tent{{name: o + "/abs", body: "x"}} },
			rejected: []string{"OUT/abs"}},
		{name: "relative symlink escaping then write", ents: func(string) []tent {
			return []tent{{name: "l", link: "../../..", typ: tar.TypeSymlink}, {name: "l/pwned", body: "x"}}
		}, rejected: []string{"l"}, inRoot: []string{"l/pwned"}},
		{name: "absolute symlink then write", ents: func(o string) []tent {
			return []tent{{name: "al", link: o, typ: tar.TypeSymlink}, {name: "al/pwned", body: "x"}}
		}, inRoot: []string{"al", "OUT/pwned"}},
		{name: "absolute symlink with dotdot then write", ents: func(o string) []tent {
			return []tent{{name: "dl", link: "/../../../../", typ: tar.TypeSymlink}, {name: "dl/pwned2", body: "x"}}
		}, inRoot: []string{"pwned2"}},
		{name: "symlink chain", ents: func(o string) []tent {
			return []tent{{name: "c1", link: "c2", typ: tar.TypeSymlink}, {name: "c2", link: o + "/..", typ: tar.TypeSymlink}, {name: "c1/x", body: "x"}}
		}, inRoot: []string{"PARENT/x"}},
		{name: "hard link out of root", ents: func(o string) []tent {
			return []tent{{name: "h1", link: "../outside/secret", typ: tar.TypeLink}, {name: "h2", link: o + "/secret", typ: tar.TypeLink}}
		}, rejected: []string{"h1", "h2"}},
		{name: "hard link through absolute symlink", ents: func(o string) []tent {
			return []tent{{name: "al", link: o, typ: tar.TypeSymlink}, {name: "h3", link: "al/secret", typ: tar.TypeLink}}
		}, rejected: []string{"h3"}, inRoot: []string{"al"}},
		{name: "device nodes and fifo", ents: func(string) []tent {
			return []tent{{name: "dev/sda", typ: tar.TypeBlock}, {name: "dev/mem", typ: tar.TypeChar}, {name: "fifo", typ: tar.TypeFifo}}
		}, rejected: []string{"dev/sda", "dev/mem", "fifo"}},
		{name: "whiteout of dot and dotdot", ents: func(string) []tent {
			return []tent{{name: "d/f", body: "x"}, {name: "d/.wh.."}, {name: "d/.wh..."}, {name: ".wh.."}}
		}, rejected: []string{"d/.wh..", "d/.wh...", ".wh.."}, inRoot: []string{"d/f"}},
		{name: "setuid", ents: func(string) []tent {
			return []tent{{name: "bin/su", body: "x", mode: 0o4755}, {name: "bin/sg", body: "x", mode: 0o2755}}
		}, rejected: []string{"bin/su", "bin/sg"}},
		{name: "long name", ents: func(string) []tent { return []tent{{name: strings.Repeat("n/", 2100) + "f", body: "x"}} },
			rejected: []string{strings.Repeat("n/", 2100) + "f"}},
		{name: "huge pax header", raw: append(rawHeader("pax", 'x', int64(len(bigPAX))), pad(bigPAX)...), stop: true},
		{name: "huge gnu long name", raw: append(rawHeader("././@LongLink", 'L', int64(len(big))), pad([]byte(big))...), stop: true},
		{name: "huge size field", raw: rawHeader("f", '0', 1<<40), stop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			outside := filepath.Join(tmp, "outside")
			rootDir := filepath.Join(tmp, "root")
			for _, d := range []string{outside, rootDir} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
				t.Fatal(err)
			}
			before := listing(t, tmp)
			root, err := os.OpenRoot(rootDir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			x := NewExtractor(root, ExtractOptions{})
			in := tc.raw
			if tc.ents != nil {
				in = mkTar(t, tc.ents(outside))
			}
			err = x.Layer(0, bytes.NewReader(in))
			var got []string
			var stopped bool
			for _, e := range unjoin(err) {
				if r, ok := errors.AsType[*Rejection](e); ok {
					got = append(got, strings.ReplaceAll(r.Entry, outside, "OUT"))
				} else {
					stopped = true
					t.Logf("layer stopped: %v", e)
				}
			}
			if stopped != tc.stop {
				t.Errorf("stopped = %v, want %v (err %v)", stopped, tc.stop, err)
			}
			if d := cmp.Diff(tc.rejected, got); d != "" {
				t.Errorf("rejected entries (-want +got):\n%s\nerr: %v", d, err)
			}
			// Nothing outside the root changed.
			after := slices.DeleteFunc(listing(t, tmp), func(s string) bool { return strings.HasPrefix(s, "root/") })
			before = slices.DeleteFunc(before, func(s string) bool { return strings.HasPrefix(s, "root/") })
			if d := cmp.Diff(before, after); d != "" {
				t.Errorf("outside the root (-before +after):\n%s", d)
			}
			if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "s" {
				t.Errorf("outside/secret = %q", b)
			}
			for _, p := range tc.inRoot {
				p = strings.ReplaceAll(strings.ReplaceAll(p, "OUT", outside), "PARENT", tmp)
				if _, err := os.Lstat(filepath.Join(rootDir, p)); err != nil {
					t.Errorf("want %s inside the root: %v", p, err)
				}
			}
		})
	}
}

// rawHeader builds one ustar header block by hand (POSIX.1-2008 pax,
// "ustar Interchange Format"), for headers archive/tar refuses to write.
func rawHeader(name string, typ byte, size int64) []byte {
	b := make([]byte, 512)
	copy(b[0:100], name)
	copy(b[100:108], "0000644\x00")
	copy(b[108:116], "0000000\x00")
	copy(b[116:124], "0000000\x00")
	copy(b[124:136], fmt.Sprintf("%011o\x00", size))
	copy(b[136:148], "00000000000\x00")
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ")
	sum := 0
	for _, c := range b {
		sum += int(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func pad(b []byte) []byte {
	return append(b, make([]byte, (512-len(b)%512)%512+1024)...)
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

func TestExtractSizeLimit(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	x := NewExtractor(root, ExtractOptions{MaxBytes: 10})
	err = x.Layer(0, bytes.NewReader(mkTar(t, []tent{{name: "a", body: "123456"}, {name: "b", body: "123456"}})))
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "extraction limit") {
		t.Fatalf("err = %v, want extraction limit", err)
	}
}

func TestExtractLayers(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	x := NewExtractor(root, ExtractOptions{})
	layers := [][]tent{
		{{name: "usr/", typ: tar.TypeDir, mode: 0o755}, {name: "usr/lib/", typ: tar.TypeDir, mode: 0o755},
			{name: "lib", link: "/usr/lib", typ: tar.TypeSymlink}, {name: "lib/libc.so", body: "libc"},
			{name: "etc/keep", body: "k"}, {name: "etc/gone", body: "g"}, {name: "opq/old", body: "o"},
			{name: "bin/app", body: "app", mode: 0o755}, {name: "bin/app2", link: "bin/app", typ: tar.TypeLink},
			{name: "var/mail/", typ: tar.TypeDir, mode: 0o2775}},
		{{name: "etc/.wh.gone"}, {name: "opq/new", body: "n"}, {name: "opq/.wh..wh..opq"}, {name: "bin/app", body: "v2", mode: 0o700}},
	}
	for i, l := range layers {
		if err := x.Layer(i, bytes.NewReader(mkTar(t, l))); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}
	want := []string{". d---------", "bin d---------", "bin/app ----------", "bin/app2 ----------", "etc d---------",
		"etc/keep ----------", "lib L---------", "opq d---------", "opq/new ----------", "usr d---------",
		"usr/lib d---------", "usr/lib/libc.so ----------", "var d---------", "var/mail d---------"}
	if d := cmp.Diff(want, listing(t, dir)); d != "" {
		t.Errorf("tree (-want +got):\n%s", d)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bin/app")); string(b) != "v2" {
		t.Errorf("bin/app = %q, want v2", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "bin/app2")); string(b) != "app" {
		t.Errorf("bin/app2 = %q, want the first layer's file", b)
	}
	fi, err := os.Stat(filepath.Join(dir, "var/mail"))
	if err != nil || fi.Mode()&fs.ModeSetgid == 0 {
		t.Errorf("var/mail mode = %v, %v; want setgid directory", fi.Mode(), err)
	}
}

// FuzzParseLayer feeds arbitrary archives to the extractor: it must never
// panic and never create anything outside the root.
func FuzzParseLayer(f *testing.F) {
	f.Add(mkTar(f, []tent{{name: "a/b", body: "x"}, {name: "l", link: "/", typ: tar.TypeSymlink}, {name: "l/c", body: "y"}}))
	f.Add(mkTar(f, []tent{{name: "../x", body: "x"}, {name: "h", link: "../x", typ: tar.TypeLink}}))
	f.Add(mkTar(f, []tent{{name: "d/", typ: tar.TypeDir}, {name: "d/.wh..wh..opq"}, {name: ".wh.d"}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		tmp := t.TempDir()
		rootDir := filepath.Join(tmp, "root")
		if err := os.Mkdir(rootDir, 0o755); err != nil {
			t.Fatal(err)
		}
		root, err := os.OpenRoot(rootDir)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		NewExtractor(root, ExtractOptions{MaxBytes: 1 << 20}).Layer(0, bytes.NewReader(b))
		ents, err := os.ReadDir(tmp)
		if err != nil || len(ents) != 1 || ents[0].Name() != "root" {
			t.Fatalf("outside the root after extraction: %v %v", ents, err)
		}
	})
}

// BenchmarkExtract extracts a 16 MiB single-file layer; compare with
// BenchmarkSHA256Layer, one SHA-256 pass over the same bytes (the verify
// step every layer goes through).
func BenchmarkExtract(b *testing.B) {
	layer := mkTar(b, []tent{{name: "big", body: strings.Repeat("m", 16<<20)}})
	b.SetBytes(int64(len(layer)))
	dir := b.TempDir()
	for b.Loop() {
		root, err := os.OpenRoot(dir)
		if err != nil {
			b.Fatal(err)
		}
		if err := NewExtractor(root, ExtractOptions{}).Layer(0, bytes.NewReader(layer)); err != nil {
			b.Fatal(err)
		}
		root.Close()
	}
}

func BenchmarkSHA256Layer(b *testing.B) {
	layer := mkTar(b, []tent{{name: "big", body: strings.Repeat("m", 16<<20)}})
	b.SetBytes(int64(len(layer)))
	for b.Loop() {
		sha256.Sum256(layer)
	}
}
