//go:build cgo

package evidence_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/simulator"
	legacy "github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"github.com/mkcvm/mkcvm/initrd/runner"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
	"github.com/mkcvm/mkcvm/measure"
)

// TestVerifyRunnerEvidence verifies the JSON the in-guest runner serves
// (initrd/runner.Attester backed by the TPM simulator) against a manifest
// whose PCRs were read back from the simulator.
func TestVerifyRunnerEvidence(t *testing.T) {
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	events := bootEvents()
	for _, e := range events {
		for _, d := range e.Digests {
			if err := legacy.PCRExtend(sim, tpmutil.Handle(e.PCR), legacy.Algorithm(d.Alg), d.Value, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The kernel's IMA extends PCR 10 outside the firmware log (its own
	// log); the verifier must not replay the firmware log against it
	// unless the manifest pins it.
	for _, alg := range []legacy.Algorithm{legacy.AlgSHA256, legacy.AlgSHA384} {
		if err := legacy.PCRExtend(sim, 10, alg, make([]byte, map[legacy.Algorithm]int{legacy.AlgSHA256: 32, legacy.AlgSHA384: 48}[alg]), ""); err != nil {
			t.Fatal(err)
		}
	}
	log := measure.EventLog{SpecID: measure.NewSpecID(banks...), Events: events}
	logBytes, err := log.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	att, err := runner.NewAttester([]runner.TEE{runner.NewTPM(sim, func() ([]byte, error) { return logBytes, nil })}, key)
	if err != nil {
		t.Fatal(err)
	}
	nonce := []byte("verifier nonce 42")
	resp, err := att.Evidence(t.Context(), nonce)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	// The test plays the party that trusts this AK (e.g. via an AK certificate).
	akPub, err := tpm2.Unmarshal[tpm2.TPMTPublic](resp.Evidence[0].AKPublic)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := tpm2.Pub(*akPub)
	if err != nil {
		t.Fatal(err)
	}
	// Both banks builder pins, read back from the simulator; the runner
	// quotes both in one TPM2_Quote.
	tv := &manifest.TPMValues{PCRs: map[string]map[string]string{"sha256": {}, "sha384": {}}, Basis: map[string]string{}}
	for _, pcr := range []int{0, 4, 9} {
		for bank, alg := range map[string]legacy.Algorithm{"sha256": legacy.AlgSHA256, "sha384": legacy.AlgSHA384} {
			v, err := legacy.ReadPCR(sim, pcr, alg)
			if err != nil {
				t.Fatal(err)
			}
			tv.PCRs[bank][strconv.Itoa(pcr)] = hex.EncodeToString(v)
		}
		tv.Basis[strconv.Itoa(pcr)] = "predicted"
	}
	m := manifesttest.Sample()
	m.Shapes[2].TPM = tv
	if kind, err := evidence.Detect(raw); err != nil || kind != evidence.KindRunner {
		t.Fatalf("Detect = %q, %v", kind, err)
	}
	item := evidence.Item{Name: "evidence.json", Kind: evidence.KindRunner, Data: raw}
	opts := func(ak any, nonce []byte) evidence.Options {
		o := evidence.Options{}
		o.TPM.AK, o.TPM.Nonce = ak, nonce
		return o
	}
	if rep, err := evidence.Verify(m, []evidence.Item{item}, opts(ak, nonce)); err != nil {
		t.Fatalf("Verify: %v", err)
	} else if len(rep.Checks) < 4 {
		t.Errorf("too few checks: %+v", rep.Checks)
	}
	for _, tc := range []struct {
		name string
		o    evidence.Options
		msg  string
	}{
		{"other nonce", opts(ak, []byte("replayed")), "not the verifier's nonce"},
		{"no trusted AK", opts(nil, nonce), "no trusted attestation key"},
	} {
		_, err := evidence.Verify(m, []evidence.Item{item}, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want mention of %q", tc.name, err, tc.msg)
		}
	}
	checked384 := 0
	for _, c := range rep0(t, m, item, opts(ak, nonce)).Checks {
		if strings.HasSuffix(c.What, " sha384") && strings.Contains(c.What, " PCR") && c.OK && c.Got != "" {
			checked384++
		}
	}
	if checked384 != 3 {
		t.Errorf("%d sha384 PCRs compared with quoted values, want 3 (PCRs 0, 4, 9)", checked384)
	}
	// Bank strictness: a manifest pinning a bank the quote lacks fails and
	// names the bank; so does evidence whose sha384 values were dropped
	// (the quote still selects the bank).
	m512 := manifesttest.Sample()
	tv512 := *tv
	tv512.PCRs = map[string]map[string]string{"sha256": tv.PCRs["sha256"], "sha384": tv.PCRs["sha384"], "sha512": {"4": strings.Repeat("00", 64)}}
	m512.Shapes[2].TPM = &tv512
	_, err = evidence.Verify(m512, []evidence.Item{item}, opts(ak, nonce))
	if err == nil || !strings.Contains(err.Error(), "PCR4 sha512: bank sha512 is not quoted") {
		t.Errorf("manifest pinning sha512: %v", err)
	}
	m10 := manifesttest.Sample()
	tv10 := *tv
	tv10.PCRs = map[string]map[string]string{"sha256": maps.Clone(tv.PCRs["sha256"])}
	tv10.PCRs["sha256"]["10"] = strings.Repeat("00", 32)
	m10.Shapes[2].TPM = &tv10
	_, err = evidence.Verify(m10, []evidence.Item{item}, opts(ak, nonce))
	if err == nil || !strings.Contains(err.Error(), "event log replay sha256: PCR10 (sha256): no event extends it") {
		t.Errorf("manifest pinning PCR 10: %v", err)
	}
	var stripped runner.EvidenceResponse
	json.Unmarshal(raw, &stripped)
	var only256 []runner.PCRValue
	for _, p := range stripped.Evidence[0].PCRs {
		if p.Bank == "sha256" {
			only256 = append(only256, p)
		}
	}
	stripped.Evidence[0].PCRs = only256
	sraw, _ := json.Marshal(stripped)
	_, err = evidence.Verify(m, []evidence.Item{{Name: "stripped.json", Kind: evidence.KindRunner, Data: sraw}}, opts(ak, nonce))
	if err == nil || !strings.Contains(err.Error(), "quote selects bank sha384, evidence gives no sha384 values") ||
		!strings.Contains(err.Error(), "PCR4 sha384: bank sha384 is not quoted") {
		t.Errorf("sha384 values dropped: %v", err)
	}
	// A log digest that does not match the served log breaks the binding.
	var doctored map[string]any
	json.Unmarshal(raw, &doctored)
	doctored["workload_log"] = "AAAA"
	bad, _ := json.Marshal(doctored)
	_, err = evidence.Verify(m, []evidence.Item{{Name: "bad.json", Kind: evidence.KindRunner, Data: bad}}, opts(ak, nonce))
	if err == nil || !strings.Contains(err.Error(), "log_sha256") {
		t.Errorf("doctored workload log: %v", err)
	}
}

func rep0(t *testing.T, m *manifest.Manifest, it evidence.Item, o evidence.Options) *evidence.Report {
	t.Helper()
	r, err := evidence.Verify(m, []evidence.Item{it}, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
