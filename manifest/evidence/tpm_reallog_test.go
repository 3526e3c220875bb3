//go:build cgo

package evidence_test

import (
	"bufio"
	"encoding/hex"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/simulator"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/tpmutil"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/mkcvm/mkcvm/measure"
)

// realPCRs reads the sha256 lines of a captured MKCVM-PCR dump.
func realPCRs(t *testing.T, path string) map[int]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[int]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) == 4 && fs[0] == "MKCVM-PCR" && fs[1] == "sha256" {
			i, _ := strconv.Atoi(fs[2])
			out[i] = fs[3]
		}
	}
	return out
}

// TestVerifyTPMRealLog uses the event log and PCRs captured from a real
// QEMU/OVMF/swtpm boot (measure/testdata/tpm/q35-1024m-1cpu.*, provenance
// in testdata/provenance/tpm.md). The manifest pins swtpm's PCR values;
// the log's events are extended into the TPM simulator to obtain a signed
// quote; the verifier must accept the real log and name doctored ones.
func TestVerifyTPMRealLog(t *testing.T) {
	raw, err := os.ReadFile("../../measure/testdata/tpm/q35-1024m-1cpu.eventlog")
	if err != nil {
		t.Fatal(err)
	}
	want := realPCRs(t, "../../measure/testdata/tpm/q35-1024m-1cpu.pcrs")
	log, err := measure.ParseEventLog("real log", raw)
	if err != nil {
		t.Fatal(err)
	}
	// PCRs 1-9: PCR 0 starts at the startup locality on this platform,
	// which the simulator cannot reproduce through TPM2_PCR_Extend.
	pcrs := []int{1, 2, 3, 4, 5, 6, 7, 8, 9}
	quote := func(served []measure.Event) (*evidence.TPMEvidence, any) {
		sim, err := simulator.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer sim.Close()
		for _, e := range log.Events {
			if e.Type == measure.EvNoAction || !slices.Contains(pcrs, int(e.PCR)) {
				continue
			}
			if err := tpm2.PCRExtend(sim, tpmutil.Handle(e.PCR), tpm2.AlgSHA256, e.Digest(measure.AlgSHA256), ""); err != nil {
				t.Fatal(err)
			}
		}
		ak, err := client.AttestationKeyECC(sim)
		if err != nil {
			t.Fatal(err)
		}
		defer ak.Close()
		q, err := ak.Quote(tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: pcrs}, []byte("n"))
		if err != nil {
			t.Fatal(err)
		}
		tq := evidence.TPMQuote{Bank: "sha256", Quote: q.Quote, Signature: q.RawSig, PCRs: map[string]string{}}
		for i, v := range q.Pcrs.Pcrs {
			tq.PCRs[strconv.Itoa(int(i))] = hex.EncodeToString(v)
			// The simulator, extended with the log's digests, must reach
			// the values the real swtpm reported.
			if hex.EncodeToString(v) != want[int(i)] {
				t.Fatalf("simulator PCR%d %x, real boot %s", i, v, want[int(i)])
			}
		}
		l := *log
		l.Events = served
		b, err := l.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return &evidence.TPMEvidence{Kind: evidence.TPMKind, Quotes: []evidence.TPMQuote{tq}, EventLog: b}, ak.PublicKey()
	}
	tv := &manifest.TPMValues{PCRs: map[string]map[string]string{"sha256": {}}, Basis: map[string]string{}}
	for _, i := range pcrs {
		tv.PCRs["sha256"][strconv.Itoa(i)] = want[i]
		tv.Basis[strconv.Itoa(i)] = "predicted"
	}
	kernel := -1
	for i, e := range log.Events {
		if e.Type != measure.EvNoAction && slices.Contains(pcrs, int(e.PCR)) {
			tv.EventLog = append(tv.EventLog, manifest.Event{Index: i + 1, PCR: int(e.PCR), Type: e.Type.String(),
				Digests: map[string]string{"sha256": hex.EncodeToString(e.Digest(measure.AlgSHA256))}})
		}
		if e.Type == measure.EvEFIBootServicesApp && e.PCR == 4 {
			kernel = i
		}
	}
	if kernel < 0 {
		t.Fatal("real log has no PCR4 application event")
	}
	shape := &manifest.Shape{Name: "q35", Platform: "tpm", TPM: tv}
	events := func(f func([]measure.Event) []measure.Event) []measure.Event { return f(slices.Clone(log.Events)) }
	for _, tc := range []struct {
		name    string
		served  []measure.Event
		wantErr []string
	}{
		{"real log", log.Events, nil},
		{"kernel event removed", events(func(e []measure.Event) []measure.Event { return slices.Delete(e, kernel, kernel+1) }),
			[]string{"event log replay sha256: PCR4 (sha256)", "PCR4 events (sha256): missing event (manifest #" + strconv.Itoa(kernel+1) + " EV_EFI_BOOT_SERVICES_APPLICATION"}},
		{"PCR4 events reordered", events(func(e []measure.Event) []measure.Event {
			j := slices.IndexFunc(e, func(x measure.Event) bool {
				return x.PCR == 4 && x.Type != measure.EvNoAction && x.Type != measure.EvEFIBootServicesApp
			})
			e[j], e[kernel] = e[kernel], e[j]
			return e
		}), []string{"event log replay sha256: PCR4", "PCR4 events (sha256)"}},
		{"event inserted", events(func(e []measure.Event) []measure.Event {
			return slices.Insert(e, kernel+1, measure.NewEvent(4, measure.EvEFIBootServicesApp, []byte("x"), []byte("grub"), log.Algs()))
		}), []string{"event log replay sha256: PCR4", "extra event " + strconv.Itoa(kernel+2) + " EV_EFI_BOOT_SERVICES_APPLICATION"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, ak := quote(tc.served)
			err := evidence.VerifyTPM(ev, shape, evidence.TPMOptions{AK: ak, Nonce: []byte("n")}).Err()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("VerifyTPM: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyTPM accepted a doctored log")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
