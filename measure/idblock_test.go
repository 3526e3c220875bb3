package measure_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
)

func loadSNPKey(t *testing.T, path string) *ecdsa.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// snpIDBlockRef is the output of sev-snp-measure 0.0.13's
// snp-create-id-block.py for testdata/snp/{id,author}-key.pem (see
// testdata/provenance/snp.md).
func snpIDBlockRef(t *testing.T) (block, auth, idKeyHash, authorKeyHash []byte) {
	out, err := os.ReadFile("testdata/snp/idblock.out")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dec := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	parts := strings.Split(lines[0], ",")
	return dec(strings.TrimPrefix(parts[0], "id-block=")), dec(strings.TrimPrefix(parts[1], "id-auth=")),
		dec(strings.TrimPrefix(lines[1], "id_key_hash: ")), dec(strings.TrimPrefix(lines[2], "author_key: "))
}

func TestIDBlockKnownAnswer(t *testing.T) {
	refBlock, refAuth, refIDHash, refAuthorHash := snpIDBlockRef(t)
	idKey, authorKey := loadSNPKey(t, "testdata/snp/id-key.pem"), loadSNPKey(t, "testdata/snp/author-key.pem")
	// The digest is the kat.tsv value for debian-OVMF.fd, 4 vCPUs, EPYC-Milan, QEMU, 0x1.
	ld, _ := hex.DecodeString("e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840")
	b := &measure.IDBlock{LaunchDigest: measure.SNPDigest(ld), Version: measure.IDBlockVersion, Policy: 0x30000}
	enc, _ := b.MarshalBinary()
	if !bytes.Equal(enc, refBlock) {
		t.Errorf("ID block\n%x\nreference\n%x", enc, refBlock)
	}
	if pb, err := measure.ParseIDBlock(refBlock); err != nil || *pb != *b {
		t.Errorf("ParseIDBlock = %+v, %v", pb, err)
	}
	for _, k := range []struct {
		key  *ecdsa.PrivateKey
		want []byte
	}{{idKey, refIDHash}, {authorKey, refAuthorHash}} {
		if d, err := measure.SNPKeyDigest(&k.key.PublicKey); err != nil || !bytes.Equal(d[:], k.want) {
			t.Errorf("key digest %x (%v), reference %x", d, err, k.want)
		}
	}
	// The reference's signatures verify with our verifier; its keys encode like ours.
	a, err := measure.ParseIDAuth(refAuth)
	if err != nil {
		t.Fatal(err)
	}
	if err := measure.VerifyIDAuth(b, a); err != nil {
		t.Errorf("reference ID auth: %v", err)
	}
	// Our signatures verify, and the structure matches the reference outside the
	// (randomized) signatures.
	ours, err := measure.SignIDBlock(b, idKey, authorKey, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := measure.VerifyIDAuth(b, ours); err != nil {
		t.Errorf("our ID auth: %v", err)
	}
	if ours.IDKey != a.IDKey || ours.AuthorKey != a.AuthorKey || ours.IDKeyAlgo != a.IDKeyAlgo || ours.AuthKeyAlgo != a.AuthKeyAlgo {
		t.Error("keys or algorithms differ from the reference")
	}
	// Tampering is detected.
	b2 := *b
	b2.GuestSVN = 1
	if measure.VerifyIDAuth(&b2, ours) == nil {
		t.Error("signature verified over a different ID block")
	}
	ours.IDKeySig[3] ^= 1
	if measure.VerifyIDAuth(b, ours) == nil {
		t.Error("corrupted ID key signature verified")
	}
	// Without an author key only the block is signed.
	solo, err := measure.SignIDBlock(b, idKey, nil, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := measure.VerifyIDAuth(b, solo); err != nil || solo.AuthKeyAlgo != 0 {
		t.Errorf("ID auth without author key: %v", err)
	}
}

func FuzzParseIDAuth(f *testing.F) {
	f.Add(make([]byte, measure.SizeofIDAuth))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, p []byte) {
		a, err := measure.ParseIDAuth(p)
		if err != nil {
			return
		}
		enc, _ := a.MarshalBinary()
		if !bytes.Equal(enc, p) {
			t.Fatal("round trip differs")
		}
		_, _ = measure.ParseSNPPublicKey(a.IDKey[:])
		_ = measure.VerifyIDAuth(&measure.IDBlock{Version: 1}, a)
	})
}

func FuzzParseIDBlock(f *testing.F) {
	f.Add(make([]byte, measure.SizeofIDBlock))
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := measure.ParseIDBlock(p)
		if err != nil {
			return
		}
		enc, _ := b.MarshalBinary()
		if !bytes.Equal(enc, p) {
			t.Fatal("round trip differs")
		}
	})
}
