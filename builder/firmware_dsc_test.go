package builder

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// realDSC has the layout of Debian's edk2_2022.11-6+deb12u2.dsc (clearsigned,
// with Files and Checksums-Sha1 lists); the checksums are the real ones,
// the signature is shortened.
const realDSC = `-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA512

Format: 3.0 (quilt)
Source: edk2
Binary: ovmf, ovmf-ia32, qemu-efi-arm, qemu-efi-aarch64, qemu-efi
Architecture: all
Version: 2022.11-6+deb12u2
Maintainer: Debian QEMU Team <pkg-qemu-devel@lists.alioth.debian.org>
Build-Depends: bc, debhelper-compat (= 12), dosfstools, iasl, mtools, nasm,
 python3, uuid-dev, xorriso
Package-List:
 ovmf deb misc optional arch=all
Checksums-Sha1:
 0000000000000000000000000000000000000000 16710140 edk2_2022.11.orig.tar.xz
Checksums-Sha256:
 64257dd8a2778c969b8a869cd3b6eda2db2a346bfcf24dc729859745968f1fd6 16710140 edk2_2022.11.orig.tar.xz
 a1d848115ae9b140e64d3ab34f7c08210b665bee473e3242a6801c163678780e 77616 edk2_2022.11-6+deb12u2.debian.tar.xz
Files:
 5796c83c4624ff00c9c8703cf5424827 16710140 edk2_2022.11.orig.tar.xz
 e77ae4ba36f9ec4b9d6390c81322beec 77616 edk2_2022.11-6+deb12u2.debian.tar.xz

-----BEGIN PGP SIGNATURE-----

iQIzBAEBCgAdFiEE
-----END PGP SIGNATURE-----
`

func TestParseDSC(t *testing.T) {
	got, err := ParseDSC("edk2.dsc", []byte(realDSC))
	if err != nil {
		t.Fatal(err)
	}
	want := &DebianSourceControl{
		Source: "edk2", Version: "2022.11-6+deb12u2", Format: "3.0 (quilt)",
		Files: []SourceFile{
			{Name: "edk2_2022.11.orig.tar.xz", SHA256: "64257dd8a2778c969b8a869cd3b6eda2db2a346bfcf24dc729859745968f1fd6", Size: 16710140},
			{Name: "edk2_2022.11-6+deb12u2.debian.tar.xz", SHA256: "a1d848115ae9b140e64d3ab34f7c08210b665bee473e3242a6801c163678780e", Size: 77616},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseDSC (-want +got):\n%s", diff)
	}
	orig, deb, err := sourceTarballs(got)
	if err != nil || orig != "edk2_2022.11.orig.tar.xz" || deb != "edk2_2022.11-6+deb12u2.debian.tar.xz" {
		t.Errorf("sourceTarballs = %q, %q, %v", orig, deb, err)
	}
}

func TestParseDSCErrors(t *testing.T) {
	const sum = "64257dd8a2778c969b8a869cd3b6eda2db2a346bfcf24dc729859745968f1fd6"
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "no fields"},
		{"no source", "Format: 3.0 (quilt)\nVersion: 1\nChecksums-Sha256:\n " + sum + " 1 a.tar.xz\n", "field Source missing"},
		{"empty version", "Source: a\nVersion:\nFormat: 1.0\nChecksums-Sha256:\n " + sum + " 1 a.tar.xz\n", "line 2: field Version is empty"},
		{"no checksums", "Source: a\nVersion: 1\nFormat: 1.0\n", "field Checksums-Sha256 missing"},
		{"short checksum line", "Source: a\nVersion: 1\nFormat: 1.0\nChecksums-Sha256:\n " + sum + " 1\n", `line 5: Checksums-Sha256: "` + sum + ` 1" is not "sha256 size name"`},
		{"bad size", "Source: a\nVersion: 1\nFormat: 1.0\nChecksums-Sha256:\n " + sum + " -1 a.tar.xz\n", `line 5: Checksums-Sha256: size "-1"`},
		{"upper hex", "Source: a\nVersion: 1\nFormat: 1.0\nChecksums-Sha256:\n " + strings.ToUpper(sum) + " 1 a.tar.xz\n", "is not a lowercase sha256"},
		{"path name", "Source: a\nVersion: 1\nFormat: 1.0\nChecksums-Sha256:\n " + sum + " 1 ../a.tar.xz\n", `"../a.tar.xz" is not a plain file name`},
		{"no files", "Source: a\nVersion: 1\nFormat: 1.0\nChecksums-Sha256:\n", "line 4: Checksums-Sha256: no files"},
		{"repeated field", "Source: a\nSource: b\n", "line 2: field Source repeated"},
		{"continuation first", " x\nSource: a\n", "line 1: continuation line without a field"},
		{"not a field", "Source a\n", `line 1: "Source a" is not a "Field: value" line`},
		{"unterminated armor", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSource: a\n", "no -----BEGIN PGP SIGNATURE----- line"},
		{"armor without blank", "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256", "no blank line after the headers"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDSC("x.dsc", []byte(tc.in))
			if err == nil {
				t.Fatal("parsed")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.dsc: ") {
				t.Errorf("error %q, want x.dsc: ...%s...", err, tc.want)
			}
		})
	}
}

func FuzzParseDSC(f *testing.F) {
	f.Add([]byte(realDSC))
	f.Add([]byte("Source: a\nVersion: 1\nFormat: 1.0\nChecksums-Sha256:\n 64257dd8a2778c969b8a869cd3b6eda2db2a346bfcf24dc729859745968f1fd6 1 a.tar.xz\n"))
	f.Add([]byte("-----BEGIN PGP SIGNED MESSAGE-----\n\n- Source: a\n-----BEGIN PGP SIGNATURE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		d, err := ParseDSC("fuzz.dsc", b)
		if err != nil {
			return
		}
		enc, err := d.MarshalText()
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", d, err)
		}
		d2, err := ParseDSC("fuzz.dsc", enc)
		if err != nil {
			t.Fatalf("parsing the re-encoded .dsc: %v\n%s", err, enc)
		}
		if diff := cmp.Diff(d, d2); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}

func TestCheckDSC(t *testing.T) {
	_, src := fakeSourcePackage(t)
	good := &DebianSourceControl{Source: "fake", Version: "1.0-1", Format: "3.0 (quilt)", Files: src.Files[1:]}
	if err := checkDSC(src, good); err != nil {
		t.Fatalf("matching .dsc: %v", err)
	}
	bad := &DebianSourceControl{Source: "other", Version: "2", Format: "1.0",
		Files: []SourceFile{{Name: src.Files[1].Name, SHA256: strings.Repeat("1", 64), Size: 1}, {Name: "extra.tar.xz", SHA256: strings.Repeat("2", 64), Size: 2}}}
	err := checkDSC(src, bad)
	if err == nil {
		t.Fatal("mismatching .dsc accepted")
	}
	for _, w := range []string{
		`Source is "other", recipe says package "fake"`, `Version is "2"`, `Format is "1.0"`,
		"lists fake_1.0.orig.tar.xz as sha256 1111", "lists extra.tar.xz, which the recipe does not pin",
		"does not list fake_1.0-1.debian.tar.xz",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}
