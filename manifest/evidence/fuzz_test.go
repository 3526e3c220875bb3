package evidence_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"
	"time"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
)

// FuzzParseTPMEvidence feeds arbitrary evidence files and arbitrary
// TPMS_ATTEST / TPMT_SIGNATURE / event-log bytes through the TPM checks;
// they must reject, never panic.
func FuzzParseTPMEvidence(f *testing.F) {
	f.Add([]byte(`{"kind":"mkcvm.dev/evidence/tpm/v1","quotes":[],"event_log":""}`), []byte{}, []byte{}, []byte{})
	f.Add([]byte(`{}`), []byte("\xffTCG\x80\x18"), []byte{0x00, 0x18, 0x00, 0x0b}, []byte{0, 0, 0, 0, 3, 0, 0, 0})
	ak, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	shape := manifesttest.Sample().Shapes[2]
	f.Fuzz(func(t *testing.T, file, quote, sig, log []byte) {
		if len(file)+len(quote)+len(sig)+len(log) > 1<<16 {
			return
		}
		if ev, err := evidence.ParseTPMEvidence(file); err == nil {
			_ = evidence.VerifyTPM(ev, &shape, evidence.TPMOptions{AK: &ak.PublicKey}).Err()
		}
		raw, _ := json.Marshal(evidence.TPMEvidence{Kind: evidence.TPMKind, EventLog: log,
			Quotes: []evidence.TPMQuote{{Bank: "sha256", Quote: quote, Signature: sig, PCRs: map[string]string{"4": "00"}}}})
		ev, err := evidence.ParseTPMEvidence(raw)
		if err != nil {
			t.Fatalf("re-encoded evidence does not parse: %v", err)
		}
		if evidence.VerifyTPM(ev, &shape, evidence.TPMOptions{AK: &ak.PublicKey}).Err() == nil {
			t.Fatalf("random quote accepted")
		}
		_, _ = evidence.Detect(file)
		_ = evidence.VerifySNP(file, &manifest.Shape{Name: "s", SNP: &manifest.SNPValues{}}, evidence.SNPOptions{Now: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)})
		_ = evidence.VerifyTDX(file, &manifest.Shape{Name: "t", TDX: &manifest.TDXValues{}}, evidence.TDXOptions{Now: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), EventLog: log})
	})
}
