package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	test "github.com/google/go-sev-guest/testing"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
)

// TestVerifyCommandSNP verifies an SNP report signed by go-sev-guest's
// test-only AMD chain, trusted through --amd-roots (ASK, ARK PEM as KDS
// serves cert_chain).
func TestVerifyCommandSNP(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	signer, err := test.DefaultTestOnlyCertChain("Milan-B0", created)
	if err != nil {
		t.Fatal(err)
	}
	m := manifesttest.Sample()
	digest := sha512.Sum384([]byte("snp launch"))
	m.Shapes[0].SNP.LaunchDigest = hex.EncodeToString(digest[:])
	report := func(measurement []byte) []byte {
		raw := test.CreateRawReport(&test.TestReportOptions{ReportData: []byte("nonce")})
		r := raw[:abi.ReportSize]
		binary.LittleEndian.PutUint64(r[0x08:], 0x30000) // POLICY (SEV-SNP ABI Table 22)
		copy(r[0x90:0x90+48], measurement)               // MEASUREMENT
		rr, ss, err := signer.Sign(abi.SignedComponent(r))
		if err != nil {
			t.Fatal(err)
		}
		if err := abi.SetSignature(rr, ss, r); err != nil {
			t.Fatal(err)
		}
		certs, err := signer.CertTableBytes()
		if err != nil {
			t.Fatal(err)
		}
		return append(bytes.Clone(r), certs...)
	}
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	priv, pub, _ := manifest.GenerateKey(rand.Reader)
	key, _ := manifest.ParsePrivateKey(priv)
	signed, err := manifest.Sign(m, key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	roots := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signer.Ask.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signer.Ark.Raw})...)
	args := []string{"verify", "--manifest", write("m.sigstore.json", signed), "--key", write("o.pub", pub),
		"--at=2026-06-01T00:00:00Z", "--amd-roots", write("cert_chain.pem", roots), "--nonce", hex.EncodeToString([]byte("nonce"))}
	out, stderr, err := runMkcvm(append(args, write("good.bin", report(digest[:])))...)
	if err != nil {
		t.Fatalf("verify: %v\n%s%s", err, out, stderr)
	}
	if !strings.Contains(out, "snp-4 MEASUREMENT") {
		t.Errorf("report:\n%s", out)
	}
	other := sha512.Sum384([]byte("other kernel"))
	_, _, err = runMkcvm(append(args, write("bad.bin", report(other[:])))...)
	if exitCodeOf(err) != 1 || !strings.Contains(err.Error(), "MEASUREMENT: launch digest differs") {
		t.Errorf("other measurement: exit %d, %v", exitCodeOf(err), err)
	}
	// Without --amd-roots the embedded AMD roots do not trust the test chain.
	_, _, err = runMkcvm(append(args[:6], write("good2.bin", report(digest[:])))...)
	if exitCodeOf(err) != 1 || !strings.Contains(err.Error(), "signature chain") {
		t.Errorf("embedded roots: exit %d, %v", exitCodeOf(err), err)
	}
}
