//go:build cgo

package evidence_test

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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
	tv := &manifest.TPMValues{PCRs: map[string]map[string]string{"sha256": {}}, Basis: map[string]string{}}
	for _, pcr := range []int{0, 4, 9} {
		v, err := legacy.ReadPCR(sim, pcr, legacy.AlgSHA256)
		if err != nil {
			t.Fatal(err)
		}
		tv.PCRs["sha256"][strconv.Itoa(pcr)] = hex.EncodeToString(v)
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
