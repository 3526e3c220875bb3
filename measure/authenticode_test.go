package measure

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/foxboron/go-uefi/authenticode"
)

// syntheticPE builds a minimal PE32+ image: two sections listed out of file
// order (the hash sorts them by PointerToRawData) and tail bytes of trailing
// data after the last section.
func syntheticPE(tail int) []byte {
	const lfanew, sizeOfHeaders = 0x40, 0x200
	b := make([]byte, 0x600+tail)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], lfanew)
	copy(b[lfanew:], "PE\x00\x00")
	coff := lfanew + 4
	binary.LittleEndian.PutUint16(b[coff:], 0x8664)    // Machine
	binary.LittleEndian.PutUint16(b[coff+2:], 2)       // NumberOfSections
	binary.LittleEndian.PutUint16(b[coff+16:], 240)    // SizeOfOptionalHeader
	binary.LittleEndian.PutUint16(b[coff+18:], 0x2022) // Characteristics
	opt := coff + 20
	binary.LittleEndian.PutUint16(b[opt:], 0x20b)
	binary.LittleEndian.PutUint32(b[opt+16:], 0x1000)        // AddressOfEntryPoint
	binary.LittleEndian.PutUint64(b[opt+24:], 0)             // ImageBase
	binary.LittleEndian.PutUint32(b[opt+32:], 0x1000)        // SectionAlignment
	binary.LittleEndian.PutUint32(b[opt+36:], 0x200)         // FileAlignment
	binary.LittleEndian.PutUint32(b[opt+56:], 0x3000)        // SizeOfImage
	binary.LittleEndian.PutUint32(b[opt+60:], sizeOfHeaders) // SizeOfHeaders
	binary.LittleEndian.PutUint32(b[opt+64:], 0x12345678)    // CheckSum (excluded from the hash)
	binary.LittleEndian.PutUint16(b[opt+68:], 10)            // Subsystem: EFI application
	binary.LittleEndian.PutUint32(b[opt+108:], 16)           // NumberOfRvaAndSizes
	sec := opt + 240
	for i, s := range []struct {
		name     string
		va, ptr  uint32
		fillByte byte
	}{{".data", 0x2000, 0x400, 0xd0}, {".text", 0x1000, 0x200, 0xc3}} {
		h := sec + 40*i
		copy(b[h:], s.name)
		binary.LittleEndian.PutUint32(b[h+8:], 0x200)  // VirtualSize
		binary.LittleEndian.PutUint32(b[h+12:], s.va)  // VirtualAddress
		binary.LittleEndian.PutUint32(b[h+16:], 0x200) // SizeOfRawData
		binary.LittleEndian.PutUint32(b[h+20:], s.ptr) // PointerToRawData
		binary.LittleEndian.PutUint32(b[h+36:], 0x60000020)
		for j := range 0x200 {
			b[int(s.ptr)+j] = s.fillByte ^ byte(j)
		}
	}
	for j := range tail {
		b[0x600+j] = byte(0x40 + j)
	}
	return b
}

func goUEFIDigest(t *testing.T, img []byte) []byte {
	t.Helper()
	p, err := authenticode.Parse(bytes.NewReader(img))
	if err != nil {
		t.Fatalf("go-uefi authenticode.Parse: %v", err)
	}
	return p.Hash(crypto.SHA256)
}

func TestPEImageDigestAgainstGoUEFI(t *testing.T) {
	for _, tc := range []struct {
		name    string
		img     []byte
		samePad bool
	}{
		{"aligned", syntheticPE(8), true},
		{"no trailing data", syntheticPE(0), true},
		{"unaligned 13 trailing bytes", syntheticPE(13), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			none, err := PEImageDigest("pe", tc.img, AlgSHA256, PadNone)
			if err != nil {
				t.Fatal(err)
			}
			pad8, err := PEImageDigest("pe", tc.img, AlgSHA256, Pad8)
			if err != nil {
				t.Fatal(err)
			}
			if want := goUEFIDigest(t, tc.img); !bytes.Equal(pad8, want) {
				t.Errorf("Pad8 digest %x, go-uefi %x", pad8, want)
			}
			if bytes.Equal(none, pad8) != tc.samePad {
				t.Errorf("PadNone %x vs Pad8 %x: equal=%v, want %v", none, pad8, !tc.samePad, tc.samePad)
			}
		})
	}
}

func TestPEImageDigestDebianKernel(t *testing.T) {
	k := debianKernel(t)
	none, err := PEImageDigest("vmlinuz", k, AlgSHA256, PadNone)
	if err != nil {
		t.Fatal(err)
	}
	if want := goUEFIDigest(t, k); !bytes.Equal(none, want) {
		t.Errorf("digest %x, go-uefi %x (the Debian kernel is 8-byte aligned, so padding must not matter)", none, want)
	}
	if d, ok := osslsigncodeDigest(t, k); ok && !strings.EqualFold(hex.EncodeToString(none), d) {
		t.Errorf("digest %x, osslsigncode calculated %s", none, d)
	}
}

// osslsigncodeDigest runs `osslsigncode verify` and returns its "Calculated
// message digest". It reports false when osslsigncode is not installed
// (unless MKCVM_REQUIRE_VM=1).
func osslsigncodeDigest(t *testing.T, img []byte) (string, bool) {
	t.Helper()
	if _, err := exec.LookPath("osslsigncode"); err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatalf("osslsigncode not installed: %v", err)
		}
		t.Logf("osslsigncode not installed, skipping the cross-check")
		return "", false
	}
	p := filepath.Join(t.TempDir(), "img.efi")
	if err := os.WriteFile(p, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("osslsigncode", "verify", "-in", p).CombinedOutput() // exits non-zero: untrusted signer
	m := regexp.MustCompile(`Calculated message digest\s*:\s*([0-9A-Fa-f]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("osslsigncode verify printed no calculated digest:\n%s", out)
	}
	return string(m[1]), true
}

// TestPEImageDigestOsslsigncode signs the unaligned image with osslsigncode
// (which pads it to 8 bytes before appending the signature) and checks that
// osslsigncode's digest equals our Pad8 digest of the unsigned image and
// our digest of the signed one.
func TestPEImageDigestOsslsigncode(t *testing.T) {
	if _, err := exec.LookPath("osslsigncode"); err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatalf("osslsigncode not installed: %v", err)
		}
		t.Skip("osslsigncode not installed")
	}
	dir := t.TempDir()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mkcvm test"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<32, 0)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyPath := write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	img := syntheticPE(13)
	in := write("in.efi", img)
	signed := filepath.Join(dir, "signed.efi")
	if out, err := exec.Command("osslsigncode", "sign", "-certs", cert, "-key", keyPath, "-h", "sha256", "-in", in, "-out", signed).CombinedOutput(); err != nil {
		t.Fatalf("osslsigncode sign: %v\n%s", err, out)
	}
	sb, err := os.ReadFile(signed)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := osslsigncodeDigest(t, sb)
	pad8, _ := PEImageDigest("in.efi", img, AlgSHA256, Pad8)
	none, _ := PEImageDigest("in.efi", img, AlgSHA256, PadNone)
	ofSigned, err := PEImageDigest("signed.efi", sb, AlgSHA256, PadNone)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(hex.EncodeToString(pad8), want) || !strings.EqualFold(hex.EncodeToString(ofSigned), want) {
		t.Errorf("osslsigncode %s; ours: Pad8(unsigned) %x, signed %x", want, pad8, ofSigned)
	}
	if strings.EqualFold(hex.EncodeToString(none), want) {
		t.Errorf("PadNone digest of an unaligned image equals the padded one")
	}
}

func TestPEImageDigestErrors(t *testing.T) {
	good := syntheticPE(8)
	mod := func(off int, v ...byte) []byte { b := bytes.Clone(good); copy(b[off:], v); return b }
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"short", good[:10], "DOS header"},
		{"lfanew past end", mod(0x3c, 0xff, 0xff, 0, 0), "e_lfanew"},
		{"bad signature", mod(0x40, 'X'), "Signature"},
		{"bad magic", mod(0x58, 0x99, 0x01), "OptionalHeader.Magic: 0x199"},
		{"section past end", mod(0x148+16, 0, 0, 1, 0), "section[0].SizeOfRawData"},
		{"cert table too big", mod(0x58+112+4*8+4, 0, 0x10, 0, 0), "DataDirectory[SECURITY].Size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PEImageDigest("x.efi", tc.in, AlgSHA256, PadNone)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.efi: offset 0x") {
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func FuzzParsePEImage(f *testing.F) {
	f.Add(syntheticPE(0))
	f.Add(syntheticPE(13))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		a, errA := PEImageDigest("fuzz", b, AlgSHA256, PadNone)
		c, errC := PEImageDigest("fuzz", b, AlgSHA256, Pad8)
		if (errA == nil) != (errC == nil) {
			t.Fatalf("padding changed acceptance: %v vs %v", errA, errC)
		}
		if errA == nil && len(b)%8 == 0 && !bytes.Equal(a, c) {
			// Only when the hashed length is aligned do the two agree; the
			// hashed length can differ from len(b) by the cert table, so
			// this is informational.
			_ = c
		}
	})
}
