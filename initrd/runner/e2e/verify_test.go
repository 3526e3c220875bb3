package e2e

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/mkcvm/mkcvm/initrd/runner"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/mkcvm/mkcvm/measure"
)

// e2eShape is the recipe's only shape.
const e2eShape = "tpm-q35"

// verifyBrokerEvidence runs manifest/evidence (what `mkcvm verify` runs)
// on the evidence the key broker received in the real boot, against the
// build's unsigned manifest.json, with the broker's nonce. It must pass,
// and fail naming the reason when the manifest's PCR 15, the nonce or the
// workload log is altered.
func verifyBrokerEvidence(t *testing.T, manifestPath string, ev *runner.EvidenceResponse) {
	raw, err := os.ReadFile(manifestPath)
	if err != nil {
		t.Fatal(err)
	}
	load := func() *manifest.Manifest {
		m, err := manifest.Decode(raw)
		if err != nil {
			t.Fatalf("decoding %s: %v", manifestPath, err)
		}
		return m
	}
	// The test plays the owner who trusts this AK. A real verifier gets it
	// from outside the evidence (an AK certificate, the cloud's API);
	// swtpm has no such chain, so the trusted AK here is the one the
	// evidence carries.
	var ak crypto.PublicKey
	for _, e := range ev.Evidence {
		if e.Kind == "tpm" {
			pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](e.AKPublic)
			if err != nil {
				t.Fatal(err)
			}
			if ak, err = tpm2.Pub(*pub); err != nil {
				t.Fatal(err)
			}
		}
	}
	if ak == nil {
		t.Fatal("no TPM evidence")
	}
	opts := func(nonce []byte) evidence.Options {
		return evidence.Options{Shape: e2eShape, TPM: evidence.TPMOptions{AK: ak, Nonce: nonce}}
	}
	item := func(r *runner.EvidenceResponse) []evidence.Item {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return []evidence.Item{{Name: "kbs-evidence.json", Kind: evidence.KindRunner, Data: b}}
	}

	t.Run("genuine", func(t *testing.T) {
		m := load()
		rep, err := evidence.Verify(m, item(ev), opts(kbsNonce))
		if err != nil {
			var sb strings.Builder
			rep.Write(&sb)
			t.Fatalf("Verify: %v\n%s", err, sb.String())
		}
		// The checks that carry the real-boot claims must be there.
		for _, what := range []string{
			e2eShape + " quote sha256+sha384",
			e2eShape + " PCR15 sha256", e2eShape + " PCR15 sha384",
			e2eShape + " workload log replay sha256", e2eShape + " workload log replay sha384",
			e2eShape + " PCR15 workload events (sha256)",
			e2eShape + " event log replay sha256", e2eShape + " event log replay sha384",
		} {
			if !slices.ContainsFunc(rep.Checks, func(c evidence.Check) bool { return c.What == what && c.OK }) {
				t.Errorf("report lacks a passing %q check", what)
			}
		}
		var sb strings.Builder
		rep.Write(&sb)
		t.Logf("verification report:\n%s", sb.String())
	})

	fails := func(t *testing.T, m *manifest.Manifest, r *runner.EvidenceResponse, nonce []byte, want ...string) {
		t.Helper()
		_, err := evidence.Verify(m, item(r), opts(nonce))
		if err == nil {
			t.Fatal("Verify accepted it")
		}
		t.Logf("rejected: %v", err)
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error does not mention %q:\n%v", w, err)
			}
		}
	}
	t.Run("manifest PCR 15 altered", func(t *testing.T) {
		m := load()
		tv := m.Shapes[slices.IndexFunc(m.Shapes, func(s manifest.Shape) bool { return s.Name == e2eShape })].TPM
		v := []byte(tv.PCRs["sha256"]["15"])
		v[0] = map[bool]byte{true: '1', false: '0'}[v[0] == '0'] // another hex digit
		tv.PCRs["sha256"]["15"] = string(v)
		fails(t, m, ev, kbsNonce, "PCR15 sha256: value differs (manifest "+string(v))
	})
	t.Run("other nonce", func(t *testing.T) {
		fails(t, load(), ev, []byte("another verifier nonce"), "runner: nonce: not the verifier's nonce")
	})
	t.Run("workload event removed", func(t *testing.T) {
		events, err := measure.ParseWorkloadLog("workload_log", ev.WorkloadLog)
		if err != nil {
			t.Fatal(err)
		}
		if len(events) < 3 {
			t.Fatalf("%d workload events", len(events))
		}
		// Drop event 1 and keep the response self-consistent (log digest
		// and readable events recomputed), as a forger would.
		r := *ev
		r.WorkloadLog = measure.MarshalWorkloadLog(slices.Delete(slices.Clone(events), 1, 2))
		sum := sha256.Sum256(r.WorkloadLog)
		r.LogSHA256 = hex.EncodeToString(sum[:])
		r.WorkloadEvents = slices.Delete(slices.Clone(ev.WorkloadEvents), 1, 2)
		fails(t, load(), &r, kbsNonce,
			// The quote binds the original log: its qualifying data no
			// longer matches, and the event diff names the missing event.
			"TPMS_ATTEST.extraData",
			"PCR15 workload events (sha256): missing event (manifest #1 "+events[1].Type.String())
	})
}
