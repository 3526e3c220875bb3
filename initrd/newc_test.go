package initrd

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/google/go-cmp/cmp"
)

func sampleRecords() []Record {
	return []Record{
		File("init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		File("etc/motd", 0o644, []byte("hello\n")),
		Symlink("bin/sh", "busybox"),
		File("bin/busybox", 0o755, bytes.Repeat([]byte{0xcc}, 1001)),
		CharDev("dev/console", 0o600, 5, 1),
		Dir("tmp", 0o1777),
		File("empty", 0o600, nil),
	}
}

func TestWriteOrderAndMetadata(t *testing.T) {
	b, err := Marshal(1234, sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	es, err := Parse("sample", b)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range es {
		lines = append(lines, ListLine(e))
	}
	want := []string{
		"040755 0 0 0 - bin",
		"040755 0 0 0 - dev",
		"040755 0 0 0 - etc",
		"041777 0 0 0 - tmp",
		"120777 0 0 7 " + sum("busybox") + " bin/sh -> busybox",
		"100755 0 0 1001 " + sum(strings.Repeat("\xcc", 1001)) + " bin/busybox",
		"020600 0 0 0 - dev/console (5,1)",
		"100600 0 0 0 " + sum("") + " empty",
		"100644 0 0 6 " + sum("hello\n") + " etc/motd",
		"100755 0 0 18 " + sum("#!/bin/sh\necho hi\n") + " init",
	}
	// bin/busybox sorts before bin/sh.
	want[4], want[5] = want[5], want[4]
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("listing (-want +got):\n%s", diff)
	}
	for i, e := range es {
		wantLink := uint32(1)
		if e.IsDir() {
			wantLink = 2
		}
		if e.Ino != uint32(i) || e.MTime != 1234 || e.NLink != wantLink || e.UID != 0 || e.GID != 0 {
			t.Errorf("%s: ino %d mtime %d nlink %d uid %d gid %d", e.Path, e.Ino, e.MTime, e.NLink, e.UID, e.GID)
		}
	}
	if err := Check("sample", b, 1234, sampleRecords()); err != nil {
		t.Error(err)
	}
}

func sum(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func TestWriteIndependentOfInputOrder(t *testing.T) {
	a, err := Marshal(0, sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	rev := sampleRecords()
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	b, err := Marshal(0, rev)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("archive depends on the order of the input records")
	}
}

// TestIndependentReader reads our archive with github.com/cavaliergopher/cpio.
func TestIndependentReader(t *testing.T) {
	b, err := Marshal(99, sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	canon, _ := Canonical(sampleRecords())
	r := cpio.NewReader(bytes.NewReader(b))
	for i := 0; ; i++ {
		h, err := r.Next()
		if err == io.EOF {
			if i != len(canon) {
				t.Fatalf("independent reader saw %d entries, want %d", i, len(canon))
			}
			break
		}
		if err != nil {
			t.Fatalf("independent reader: entry %d: %v", i, err)
		}
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		w := canon[i]
		if h.Linkname != "" {
			data = []byte(h.Linkname)
		}
		if h.Name != w.Path || uint32(h.Mode) != w.Mode || !bytes.Equal(data, w.Data) || h.Uid != 0 || h.Guid != 0 || h.ModTime.Unix() != 99 {
			t.Errorf("entry %d: got %q mode %o uid %d gid %d mtime %d %d bytes, want %q mode %o", i, h.Name, h.Mode, h.Uid, h.Guid, h.ModTime.Unix(), len(data), w.Path, w.Mode)
		}
	}
}

// TestGNUCpio lists our archive with GNU cpio when it is installed.
func TestGNUCpio(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	b, err := Marshal(0, sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("cpio", "-t", "--quiet")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -t: %v", err)
	}
	want := "bin\ndev\netc\ntmp\nbin/busybox\nbin/sh\ndev/console\nempty\netc/motd\ninit\n"
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("cpio -t (-want +got):\n%s", diff)
	}
}

func TestCanonicalErrors(t *testing.T) {
	tests := []struct {
		name string
		recs []Record
		want string
	}{
		{"duplicate", []Record{File("a", 0o644, nil), File("a", 0o600, nil)}, `"a": duplicate path`},
		{"absolute", []Record{File("/a", 0o644, nil)}, `"/a": path must be relative`},
		{"escape", []Record{File("../a", 0o644, nil)}, `"../a": path must be relative`},
		{"unclean", []Record{File("a//b", 0o644, nil)}, `"a//b": path must be relative`},
		{"dot", []Record{Dir(".", 0o755)}, `".": path must be relative`},
		{"trailer", []Record{File("TRAILER!!!", 0o644, nil)}, `path must be relative`},
		{"parent file", []Record{File("a", 0o644, nil), File("a/b", 0o644, nil)}, `"a/b": parent "a" is not a directory`},
		{"bad type", []Record{{Path: "a", Mode: 0o644}}, `unknown file type`},
		{"dir data", []Record{{Path: "a", Mode: TypeDir | 0o755, Data: []byte{1}}}, `only files and symlinks carry data`},
		{"file rdev", []Record{{Path: "a", Mode: TypeReg | 0o755, RDevMajor: 1}}, `only devices have a device number`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Marshal(0, tc.recs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Marshal(-1, nil); err == nil {
		t.Error("negative epoch accepted")
	}
}

func TestParseErrors(t *testing.T) {
	good, err := Marshal(0, []Record{File("a", 0o644, []byte("xyz"))})
	if err != nil {
		t.Fatal(err)
	}
	mut := func(off int, s string) []byte {
		b := bytes.Clone(good)
		copy(b[off:], s)
		return b
	}
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "x: offset 0x0: header: 0 bytes left, need 110: missing TRAILER!!! record"},
		{"magic", mut(0, "070707"), `x: offset 0x0: c_magic: "070707", want "070701"`},
		{"hex", mut(6+8, "0000g644"), `x: offset 0xe: c_mode: "0000g644" is not 8 hex digits`},
		{"namesize zero", mut(6+11*8, "00000000"), "x: offset 0x5e: c_namesize: 0, want 2..4096"},
		{"namesize past end", mut(6+11*8, "00001000"), "x: offset 0x5e: c_namesize: name ends at"},
		{"name not terminated", mut(6+11*8, "00000001"), "c_namesize: 1, want 2..4096"},
		{"filesize past end", mut(6+6*8, "0000ffff"), "x: offset 0x36: c_filesize: 65535 bytes of data from 0x70 run past the end"},
		{"check", mut(6+12*8, "00000001"), "x: offset 0x66: c_check: 0x1, must be 0 in newc"},
		{"truncated", good[:len(good)-20], "missing TRAILER!!! record"},
		{"garbage tail", append(bytes.Clone(good), 0, 0, 1), "padding: non-zero byte 0x01 after the trailer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x", tc.b)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FormatError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want %q", err, tc.want)
			}
		})
	}
}

// FuzzParseNewc: Parse never panics, and whatever parses and is accepted by
// the writer round-trips: Write(Parse(Write(x))) == Write(x).
func FuzzParseNewc(f *testing.F) {
	b, _ := Marshal(7, sampleRecords())
	f.Add(b)
	b, _ = Marshal(0, nil)
	f.Add(b)
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<20 {
			return
		}
		es, err := Parse("fuzz", b)
		if err != nil {
			return
		}
		recs := make([]Record, len(es))
		for i, e := range es {
			recs[i] = e.Record
		}
		first, err := Marshal(0, recs)
		if err != nil {
			return
		}
		es2, err := Parse("fuzz", first)
		if err != nil {
			t.Fatalf("re-parsing our own archive: %v", err)
		}
		recs = recs[:0]
		for _, e := range es2 {
			recs = append(recs, e.Record)
		}
		second, err := Marshal(0, recs)
		if err != nil {
			t.Fatalf("re-writing: %v", err)
		}
		if !bytes.Equal(first, second) {
			t.Fatal("write/parse/write not stable")
		}
	})
}

func TestCompressionRoundTrip(t *testing.T) {
	raw, err := Marshal(0, sampleRecords())
	if err != nil {
		t.Fatal(err)
	}
	tools := map[string][]string{Gzip: {"gzip", "-dc"}, Zstd: {"zstd", "-dc"}}
	for _, c := range []string{None, Gzip, Zstd} {
		t.Run(c, func(t *testing.T) {
			z, err := Compress(c, raw)
			if err != nil {
				t.Fatal(err)
			}
			z2, _ := Compress(c, raw)
			if !bytes.Equal(z, z2) {
				t.Error("compression is not deterministic")
			}
			got, name, err := Decompress("x", z)
			if err != nil || name != c || !bytes.Equal(got, raw) {
				t.Fatalf("Decompress: %s, %v, equal=%v", name, err, bytes.Equal(got, raw))
			}
			if c == Gzip && (!bytes.Equal(z[4:8], []byte{0, 0, 0, 0}) || z[3]&0x08 != 0) {
				t.Errorf("gzip header has mtime % x or a name (flags %#x)", z[4:8], z[3])
			}
			tool, ok := tools[c]
			if !ok {
				return
			}
			if _, err := exec.LookPath(tool[0]); err != nil {
				t.Skipf("%s not installed", tool[0])
			}
			cmd := exec.Command(tool[0], tool[1:]...)
			cmd.Stdin = bytes.NewReader(z)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%v: %v", tool, err)
			}
			if !bytes.Equal(out, raw) {
				t.Errorf("%v output differs from the archive", tool)
			}
		})
	}
	if _, err := Compress("lz4", raw); err == nil {
		t.Error("unknown compression accepted")
	}
	if _, _, err := Decompress("x", []byte("nope")); err == nil || !strings.Contains(err.Error(), "neither newc cpio, gzip nor zstd") {
		t.Errorf("err = %v", err)
	}
}

func TestCheckReportsDifferences(t *testing.T) {
	b, _ := Marshal(0, sampleRecords())
	other := append(sampleRecords(), File("extra", 0o644, nil))
	if err := Check("x", b, 0, other); err == nil {
		t.Error("Check accepted an archive missing a record")
	}
	if err := Check("x", b, 5, sampleRecords()); err == nil || !strings.Contains(err.Error(), "metadata not canonical") {
		t.Errorf("Check with wrong epoch: %v", err)
	}
}

func BenchmarkWrite(b *testing.B) {
	recs := benchRecords()
	var total int64
	for _, r := range recs {
		total += int64(len(r.Data))
	}
	b.SetBytes(total)
	sink := bytes.NewBuffer(make([]byte, 0, total+1<<20))
	for b.Loop() {
		sink.Reset()
		if err := Write(sink, 0, recs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIOCopy is the physical limit for BenchmarkWrite: copying the
// same file bytes into the same kind of preallocated in-memory sink
// (BenchmarkWrite should stay within 1.5x of it).
func BenchmarkIOCopy(b *testing.B) {
	recs := benchRecords()
	var total int64
	for _, r := range recs {
		total += int64(len(r.Data))
	}
	b.SetBytes(total)
	sink := bytes.NewBuffer(make([]byte, 0, total+1<<20))
	for b.Loop() {
		sink.Reset()
		for _, r := range recs {
			if _, err := io.Copy(sink, bytes.NewReader(r.Data)); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func benchRecords() []Record {
	var recs []Record
	for i := range 64 {
		recs = append(recs, File("bin/f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26)), 0o755, bytes.Repeat([]byte{byte(i)}, 1<<20+i)))
	}
	return recs
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

// TestGNUCpioReproducible compares our bytes with GNU cpio's
// "--reproducible --owner=0:0" archive of the same tree (an independent
// writer): equal up to GNU's padding of the archive to 512 bytes.
func TestGNUCpioReproducible(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	const epoch = 1700000000
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "init"), []byte("#!/bin/sh\necho hi\n"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "motd"), []byte("hello\n"), 0o644)
	for _, p := range []string{"init", "etc/motd", "etc"} {
		fp := filepath.Join(tree, p)
		os.Chmod(fp, map[string]os.FileMode{"init": 0o755, "etc/motd": 0o644, "etc": 0o755}[p])
		os.Chtimes(fp, time.Unix(epoch, 0), time.Unix(epoch, 0))
	}
	cmd := exec.Command("cpio", "-o", "-H", "newc", "--reproducible", "--owner=0:0", "--quiet")
	cmd.Dir = tree
	cmd.Stdin = strings.NewReader("etc\netc/motd\ninit\n")
	gnu, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -o: %v", err)
	}
	ours, err := Marshal(epoch, []Record{
		File("init", 0o755, []byte("#!/bin/sh\necho hi\n")),
		File("etc/motd", 0o644, []byte("hello\n")),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(gnu) < len(ours) || !bytes.Equal(gnu[:len(ours)], ours) || len(bytes.Trim(gnu[len(ours):], "\x00")) != 0 {
		t.Errorf("archive differs from GNU cpio's\nours:\n%s\ngnu:\n%s", hex.Dump(ours), hex.Dump(gnu))
	}
}
