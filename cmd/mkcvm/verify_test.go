//go:build cgo

package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
	"github.com/mkcvm/mkcvm/measure"
)

// tpmBoot extends events into the TPM simulator and returns TPM evidence
// (sha256 quote of PCRs 4 and 9 over nonce), the AK as PEM and the PCR
// values the simulator reports.
func tpmBoot(t *testing.T, events []measure.Event, nonce []byte) ([]byte, []byte, map[string]string) {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for _, e := range events {
		for _, d := range e.Digests {
			if err := tpm2.PCRExtend(sim, tpmutil.Handle(e.PCR), tpm2.Algorithm(d.Alg), d.Value, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	ak, err := client.AttestationKeyECC(sim)
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	q, err := ak.Quote(tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{4, 9}}, nonce)
	if err != nil {
		t.Fatal(err)
	}
	pcrs := map[string]string{}
	for i, v := range q.Pcrs.Pcrs {
		pcrs[strconv.Itoa(int(i))] = hex.EncodeToString(v)
	}
	l := measure.EventLog{SpecID: measure.NewSpecID(measure.AlgSHA256), Events: events}
	logBytes, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := json.Marshal(evidence.TPMEvidence{Kind: evidence.TPMKind, EventLog: logBytes,
		Quotes: []evidence.TPMQuote{{Bank: "sha256", Quote: q.Quote, Signature: q.RawSig, PCRs: pcrs}}})
	der, err := x509.MarshalPKIXPublicKey(ak.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return ev, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), pcrs
}

func TestVerifyCommandTPM(t *testing.T) {
	algs := []measure.HashAlg{measure.AlgSHA256}
	events := []measure.Event{
		measure.NewEvent(4, measure.EvEFIAction, []byte("Calling EFI Application from Boot Option"), []byte("Calling EFI Application from Boot Option"), algs),
		measure.NewEvent(4, measure.EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, algs),
		measure.NewEvent(4, measure.EvEFIBootServicesApp, []byte("kernel"), []byte("kernel bytes"), algs),
		measure.NewEvent(9, measure.EvIPL, []byte("initrd"), []byte("initrd bytes"), algs),
	}
	nonce := []byte("0123456789abcdef")
	ev, akPEM, pcrs := tpmBoot(t, events, nonce)

	// Reference values: the simulator's PCRs and the predicted events.
	m := manifesttest.Sample()
	tv := &manifest.TPMValues{PCRs: map[string]map[string]string{"sha256": pcrs}, Basis: map[string]string{"4": "predicted", "9": "predicted"}}
	for i, e := range events {
		tv.EventLog = append(tv.EventLog, manifest.Event{Index: i + 1, PCR: int(e.PCR), Type: e.Type.String(),
			Digests: map[string]string{"sha256": hex.EncodeToString(e.Digests[0].Value)}})
	}
	m.Shapes[2].TPM = tv
	dir := t.TempDir()
	priv, pub, err := manifest.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := manifest.ParsePrivateKey(priv)
	signed, err := manifest.Sign(m, key, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := []string{"verify", "--manifest", write("m.sigstore.json", signed), "--key", write("owner.pub", pub),
		"--at=2026-06-01T00:00:00Z", "--ak", write("ak.pub", akPEM), "--nonce", hex.EncodeToString(nonce)}

	out, stderr, err := runMkcvm(append(args, write("tpm.json", ev))...)
	if err != nil {
		t.Fatalf("verify genuine evidence: %v\n%s\n%s", err, out, stderr)
	}
	t.Logf("report:\n%s", out)
	if !strings.Contains(out, "vtpm PCR4 sha256") || !strings.Contains(out, "vtpm PCR4 events (sha256)") {
		t.Errorf("report lacks PCR rows:\n%s", out)
	}

	jsonOut, _, err := runMkcvm(append(append([]string(nil), args...), "--json", write("tpm-json.json", ev))...)
	var res struct {
		Verified bool             `json:"verified"`
		Checks   []evidence.Check `json:"checks"`
	}
	if err != nil || json.Unmarshal([]byte(jsonOut), &res) != nil || !res.Verified || len(res.Checks) < 4 {
		t.Errorf("verify --json: %v\n%s", err, jsonOut)
	}

	// The guest really ran a second application: PCR4 differs and the
	// event is named.
	extra := append(append([]measure.Event(nil), events[:3]...),
		measure.NewEvent(4, measure.EvEFIBootServicesApp, []byte("shell"), []byte("uefi shell"), algs), events[3])
	ev2, ak2, _ := tpmBoot(t, extra, nonce)
	args2 := append([]string(nil), args...)
	args2[7] = write("ak2.pub", ak2)
	out, _, err = runMkcvm(append(args2, "tpm:"+write("tpm2.json", ev2))...)
	if exitCodeOf(err) != 1 || !strings.Contains(err.Error(), "extra event 4 EV_EFI_BOOT_SERVICES_APPLICATION") {
		t.Errorf("extra event: exit %d, %v\n%s", exitCodeOf(err), err, out)
	}

	// Evidence quoted with a stale nonce.
	stale := append([]string(nil), args...)
	stale[9] = hex.EncodeToString([]byte("another nonce"))
	if _, _, err := runMkcvm(append(stale, write("tpm3.json", ev))...); exitCodeOf(err) != 1 || !strings.Contains(err.Error(), "is not the nonce") {
		t.Errorf("stale nonce: %v", err)
	}
}
