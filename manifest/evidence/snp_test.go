package evidence_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	test "github.com/google/go-sev-guest/testing"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
)

// Offsets in the attestation report (AMD SEV-SNP ABI 1.55, Table 22).
const (
	offPolicy      = 0x08
	offMeasurement = 0x90
)

var snpCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// snpEvidence builds an attestation report with the given measurement,
// policy and report data, signs it with go-sev-guest's test-only AMD key
// chain (as its fake sev-guest device does), and appends the certificate
// table. It returns the evidence and roots that trust that chain.
func snpEvidence(t *testing.T, measurement []byte, policy uint64, reportData []byte) ([]byte, map[string][]*trust.AMDRootCerts) {
	t.Helper()
	signer, err := test.DefaultTestOnlyCertChain("Milan-B0", snpCreated)
	if err != nil {
		t.Fatal(err)
	}
	raw := test.CreateRawReport(&test.TestReportOptions{ReportData: reportData})
	report := raw[:abi.ReportSize]
	binary.LittleEndian.PutUint64(report[offPolicy:], policy)
	copy(report[offMeasurement:offMeasurement+48], measurement)
	r, s, err := signer.Sign(abi.SignedComponent(report))
	if err != nil {
		t.Fatal(err)
	}
	if err := abi.SetSignature(r, s, report); err != nil {
		t.Fatal(err)
	}
	certs, err := signer.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	root := trust.AMDRootCertsProduct("Milan")
	root.ProductCerts = &trust.ProductCerts{Ark: signer.Ark, Ask: signer.Ask}
	return append(bytes.Clone(report), certs...), map[string][]*trust.AMDRootCerts{"Milan": {root}}
}

func TestVerifySNP(t *testing.T) {
	digest := sha512.Sum384([]byte("launch digest"))
	policy := uint64(0x30000)
	nonce := []byte("nonce")
	shape := &manifest.Shape{Name: "snp", Platform: "snp", Policy: "0x30000",
		SNP: &manifest.SNPValues{Mode: "snp", LaunchDigest: hex.EncodeToString(digest[:])}}
	good, roots := snpEvidence(t, digest[:], policy, nonce)
	otherDigest := sha512.Sum384([]byte("another kernel"))
	wrongMeasurement, _ := snpEvidence(t, otherDigest[:], policy, nonce)
	debugPolicy, _ := snpEvidence(t, digest[:], policy|1<<19, nonce)
	tampered := bytes.Clone(good)
	tampered[offMeasurement] ^= 1
	_, otherRoots := func() ([]byte, map[string][]*trust.AMDRootCerts) {
		// A chain from different keys: the ARK/ASK of another builder.
		b := &test.AmdSignerBuilder{Keys: &test.AmdKeys{Ark: test.DefaultAsk(), Ask: test.DefaultArk(), Asvk: test.DefaultAsvk(), Vcek: test.DefaultVcek(), Vlek: test.DefaultVlek()},
			ProductName: "Milan-B0", ArkCreationTime: snpCreated, AskCreationTime: snpCreated, AsvkCreationTime: snpCreated, VcekCreationTime: snpCreated, VlekCreationTime: snpCreated}
		s, err := b.TestOnlyCertChain()
		if err != nil {
			t.Fatal(err)
		}
		root := trust.AMDRootCertsProduct("Milan")
		root.ProductCerts = &trust.ProductCerts{Ark: s.Ark, Ask: s.Ask}
		return nil, map[string][]*trust.AMDRootCerts{"Milan": {root}}
	}()
	now := snpCreated.Add(24 * time.Hour)
	for _, tc := range []struct {
		name     string
		evidence []byte
		opts     evidence.SNPOptions
		wantErr  []string
	}{
		{"genuine", good, evidence.SNPOptions{Now: now, TrustedRoots: roots, ReportData: nonce}, nil},
		{"other launch digest", wrongMeasurement, evidence.SNPOptions{Now: now, TrustedRoots: roots}, []string{"MEASUREMENT: launch digest differs (manifest " + hex.EncodeToString(digest[:])}},
		{"debug policy", debugPolicy, evidence.SNPOptions{Now: now, TrustedRoots: roots}, []string{"POLICY: guest policy differs (manifest 0x30000, evidence 0xb0000)"}},
		{"flipped byte in report", tampered, evidence.SNPOptions{Now: now, TrustedRoots: roots}, []string{"signature chain"}},
		{"untrusted root", good, evidence.SNPOptions{Now: now, TrustedRoots: otherRoots}, []string{"signature chain"}},
		{"wrong nonce", good, evidence.SNPOptions{Now: now, TrustedRoots: roots, ReportData: []byte("other")}, []string{"REPORT_DATA: not the expected nonce"}},
		{"truncated", good[:100], evidence.SNPOptions{Now: now, TrustedRoots: roots}, []string{"100 bytes, an attestation report is 1184 (0x4a0)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := evidence.VerifySNP(tc.evidence, shape, tc.opts).Err()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("VerifySNP: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifySNP accepted the evidence")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
