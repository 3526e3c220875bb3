//go:build cgo

// The TPM simulator (Microsoft's reference implementation) needs cgo and
// OpenSSL's libcrypto; `make test` installs gcc and libssl-dev.

package runner

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/sha256"
	"math/big"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	tpmdirect "github.com/google/go-tpm/tpm2"

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
	// The quote covers both banks a manifest pins, one after the other.
	verifyTPMQuote(t, ev, b, map[string][]byte{"sha256": want.PCRSHA256[:], "sha384": want.PCRSHA384[:]})
	if string(ev.EventLog) != "firmware log" {
		t.Errorf("event log = %q", ev.EventLog)
	}
}

// verifyTPMQuote checks the quote with the legacy go-tpm decoders (not
// manifest/evidence): signature, qualifying data, that it selects PCRs 0-23
// of exactly the banks of pcr15 in that order, the PCR digest over the
// served values, and PCR 15 of each bank.
func verifyTPMQuote(t *testing.T, ev *Evidence, b measure.WorkloadBinding, pcr15 map[string][]byte) {
	t.Helper()
	pub, err := tpmdirect.Unmarshal[tpmdirect.TPMTPublic](ev.AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tpmdirect.Pub(*pub)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := tpmdirect.Unmarshal[tpmdirect.TPMTSignature](ev.Signature)
	if err != nil {
		t.Fatal(err)
	}
	esig, err := sig.Signature.ECDSA()
	if err != nil {
		t.Fatal(err)
	}
	qd := sha256.Sum256(ev.Quote)
	r, s := new(big.Int).SetBytes(esig.SignatureR.Buffer), new(big.Int).SetBytes(esig.SignatureS.Buffer)
	if !ecdsa.Verify(key.(*ecdsa.PublicKey), qd[:], r, s) {
		t.Fatal("quote signature does not verify with the AK")
	}
	att, err := tpmdirect.Unmarshal[tpmdirect.TPMSAttest](ev.Quote)
	if err != nil {
		t.Fatal(err)
	}
	nonce := b.TPMNonce()
	if !bytes.Equal(att.ExtraData.Buffer, nonce[:]) {
		t.Errorf("quote extra data %x, want the binding %x", att.ExtraData.Buffer, nonce)
	}
	info, err := att.Attested.Quote()
	if err != nil {
		t.Fatal(err)
	}
	order := []string{"sha256", "sha384"}
	algs := []tpmdirect.TPMIAlgHash{tpmdirect.TPMAlgSHA256, tpmdirect.TPMAlgSHA384}
	if n := len(info.PCRSelect.PCRSelections); n != len(order) {
		t.Fatalf("quote has %d PCR selections, want %v", n, order)
	}
	for i, sel := range info.PCRSelect.PCRSelections {
		if sel.Hash != algs[i] || !bytes.Equal(sel.PCRSelect, []byte{0xff, 0xff, 0xff}) {
			t.Errorf("quoted selection %d: hash 0x%x PCRs %x, want %s PCRs 0-23", i, uint16(sel.Hash), sel.PCRSelect, order[i])
		}
	}
	if len(ev.PCRs) != 24*len(order) {
		t.Fatalf("%d PCR values served, want 24 per bank of %v", len(ev.PCRs), order)
	}
	h := sha256.New()
	got15 := map[string][]byte{}
	for i, p := range ev.PCRs {
		if p.Bank != order[i/24] || p.Index != i%24 {
			t.Fatalf("PCRs[%d] is %s PCR %d", i, p.Bank, p.Index)
		}
		h.Write(p.Value)
		if p.Index == measure.WorkloadPCR {
			got15[p.Bank] = p.Value
		}
	}
	if !bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
		t.Error("quoted PCR digest does not match the served PCR values")
	}
	for _, bank := range order {
		if !bytes.Equal(got15[bank], pcr15[bank]) {
			t.Errorf("served %s PCR %d = %x, want %x", bank, measure.WorkloadPCR, got15[bank], pcr15[bank])
		}
	}
}
