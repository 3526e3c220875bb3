//go:build cgo

// The TPM simulator (Microsoft's reference implementation) needs cgo and
// OpenSSL's libcrypto; `make test` installs gcc and libssl-dev.

package runner

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mkcvm/mkcvm/measure"
)

// TestTPMSimulator extends the reference TPM 2.0 simulator (Microsoft's
// implementation, via go-tpm-tools) and checks PCR 15 against the replay,
// then verifies the quote: signature by the AK, qualifying data, PCR digest.
func TestTPMSimulator(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	tp := NewTPM(sim, func() ([]byte, error) { return []byte("firmware log"), nil })
	events, want, err := measure.PredictWorkload(testRef)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if err := tp.Extend(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, bank := range []struct {
		alg  tpm2.Algorithm
		want []byte
	}{{tpm2.AlgSHA256, want.PCRSHA256[:]}, {tpm2.AlgSHA384, want.PCRSHA384[:]}, {tpm2.AlgSHA1, want.PCRSHA1[:]}, {tpm2.AlgSHA512, want.PCRSHA512[:]}} {
		got, err := tpm2.ReadPCR(sim, measure.WorkloadPCR, bank.alg)
		if err != nil || len(got) == 0 {
			if bank.alg == tpm2.AlgSHA256 {
				t.Fatalf("reading PCR %d bank %v: %v", measure.WorkloadPCR, bank.alg, err)
			}
			t.Logf("simulator has no %v bank: %v", bank.alg, err)
			continue
		}
		if !bytes.Equal(got, bank.want) {
			t.Errorf("PCR %d bank %v = %x, replay %x", measure.WorkloadPCR, bank.alg, got, bank.want)
		}
	}
	b := testBinding(t)
	ev, err := tp.Report(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	verifyTPMQuote(t, ev, b, want.PCRSHA256[:])
	if string(ev.EventLog) != "firmware log" {
		t.Errorf("event log = %q", ev.EventLog)
	}
}

func verifyTPMQuote(t *testing.T, ev *Evidence, b measure.WorkloadBinding, pcr15 []byte) {
	t.Helper()
	pub, err := tpm2.DecodePublic(ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pub.Key()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tpm2.DecodeSignature(bytes.NewBuffer(ev.Signature))
	if err != nil {
		t.Fatal(err)
	}
	qd := sha256.Sum256(ev.Quote)
	if !ecdsa.Verify(key.(*ecdsa.PublicKey), qd[:], sig.ECC.R, sig.ECC.S) {
		t.Fatal("quote signature does not verify with the AK")
	}
	att, err := tpm2.DecodeAttestationData(ev.Quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := b.TPMNonce()
	if !bytes.Equal(att.ExtraData, nonce[:]) {
		t.Errorf("quote extra data %x, want the binding %x", att.ExtraData, nonce)
	}
	h := sha256.New()
	var got15 []byte
	for i, p := range ev.PCRs {
		if p.Index != i {
			t.Fatalf("PCRs[%d] is PCR %d", i, p.Index)
		}
		h.Write(p.Value)
		if p.Index == measure.WorkloadPCR {
			got15 = p.Value
		}
	}
	if !bytes.Equal(h.Sum(nil), att.AttestedQuoteInfo.PCRDigest) {
		t.Error("quoted PCR digest does not match the served PCR values")
	}
	if !bytes.Equal(got15, pcr15) {
		t.Errorf("served PCR %d = %x, want %x", measure.WorkloadPCR, got15, pcr15)
	}
}
