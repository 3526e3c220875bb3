//go:build cgo

package evidence_test

import (
	"crypto"
	"encoding/hex"
	"errors"
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

var banks = []measure.HashAlg{measure.AlgSHA1, measure.AlgSHA256}

func bootEvents() []measure.Event {
	return []measure.Event{
		measure.NewEvent(0, measure.EvSCRTMVersion, []byte("mkcvm test firmware\x00"), []byte("mkcvm test firmware\x00"), banks),
		measure.NewEvent(0, measure.EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, banks),
		measure.NewEvent(4, measure.EvEFIAction, []byte("Calling EFI Application from Boot Option"), []byte("Calling EFI Application from Boot Option"), banks),
		measure.NewEvent(4, measure.EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, banks),
		measure.NewEvent(4, measure.EvEFIBootServicesApp, []byte("devpath"), []byte("kernel image bytes"), banks),
		measure.NewEvent(9, measure.EvIPL, []byte("initrd"), []byte("initrd bytes"), banks),
	}
}

// booted is what a simulated boot produced: the evidence, the AK and the
// PCR values read back from the TPM simulator (the independent oracle for
// the manifest's reference values).
type booted struct {
	ev   *evidence.TPMEvidence
	ak   crypto.PublicKey
	pcrs map[int][]byte // sha256
}

// boot extends the events into a fresh TPM simulator, quotes PCRs 0, 4, 9
// in both banks with nonce, and returns the evidence with a log of
// logEvents (the events the guest reports; normally the same).
func boot(t *testing.T, extended, logEvents []measure.Event, nonce []byte) booted {
	t.Helper()
	sim, err := simulator.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	for _, e := range extended {
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
	out := booted{ev: &evidence.TPMEvidence{Kind: evidence.TPMKind}, ak: ak.PublicKey(), pcrs: map[int][]byte{}}
	for _, alg := range banks {
		q, err := ak.Quote(tpm2.PCRSelection{Hash: tpm2.Algorithm(alg), PCRs: []int{0, 4, 9}}, nonce)
		if err != nil {
			t.Fatal(err)
		}
		tq := evidence.TPMQuote{Bank: alg.String(), Quote: q.Quote, Signature: q.RawSig, PCRs: map[string]string{}}
		for idx, v := range q.Pcrs.Pcrs {
			tq.PCRs[strconv.Itoa(int(idx))] = hex.EncodeToString(v)
			if alg == measure.AlgSHA256 {
				out.pcrs[int(idx)] = v
			}
		}
		out.ev.Quotes = append(out.ev.Quotes, tq)
	}
	log := measure.EventLog{SpecID: measure.NewSpecID(banks...), Events: logEvents}
	if out.ev.EventLog, err = log.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	return out
}

// shapeFor returns a manifest shape pinning the PCR values of a reference
// boot (read from the simulator) with its events as predicted events.
func shapeFor(ref booted, events []measure.Event) *manifest.Shape {
	tv := &manifest.TPMValues{PCRs: map[string]map[string]string{"sha256": {}}, Basis: map[string]string{}}
	for idx, v := range ref.pcrs {
		tv.PCRs["sha256"][strconv.Itoa(idx)] = hex.EncodeToString(v)
		tv.Basis[strconv.Itoa(idx)] = "predicted"
	}
	for i, e := range events {
		me := manifest.Event{Index: i + 1, PCR: int(e.PCR), Type: e.Type.String(), Digests: map[string]string{}}
		for _, d := range e.Digests {
			me.Digests[d.Alg.String()] = hex.EncodeToString(d.Value)
		}
		tv.EventLog = append(tv.EventLog, me)
	}
	return &manifest.Shape{Name: "vtpm", Platform: "tpm", TPM: tv}
}

func TestVerifyTPM(t *testing.T) {
	nonce := []byte("fresh nonce 0123")
	events := bootEvents()
	ref := boot(t, events, events, nonce)
	shape := shapeFor(ref, events)

	without := func(i int) []measure.Event { return slices.Delete(bootEvents(), i, i+1) }
	swapped := bootEvents()
	swapped[3], swapped[4] = swapped[4], swapped[3]
	extra := measure.NewEvent(4, measure.EvEFIBootServicesApp, []byte("devpath2"), []byte("a second bootloader"), banks)
	inserted := slices.Insert(bootEvents(), 5, extra)
	other := boot(t, events, events, nonce) // a different AK (fresh simulator seed)

	for _, tc := range []struct {
		name    string
		ev      booted
		opts    evidence.TPMOptions
		shape   *manifest.Shape
		wantErr []string
	}{
		{"genuine", ref, evidence.TPMOptions{Nonce: nonce}, shape, nil},
		{"other AK", ref, evidence.TPMOptions{AK: other.ak, Nonce: nonce}, shape, []string{"quote 0 (sha1): invalid evidence: quote signature does not verify"}},
		{"stale nonce", ref, evidence.TPMOptions{Nonce: []byte("old nonce")}, shape, []string{"is not the nonce"}},
		{"log event removed", boot(t, events, without(4), nonce), evidence.TPMOptions{Nonce: nonce}, shape,
			[]string{"event log replay sha256: PCR4 (sha256): replay of events 3, 4 gives", "missing event (manifest #5 EV_EFI_BOOT_SERVICES_APPLICATION"}},
		{"log events reordered", boot(t, events, swapped, nonce), evidence.TPMOptions{Nonce: nonce}, shape,
			[]string{"event log replay sha256: PCR4 (sha256)", "PCR4 events (sha256)"}},
		{"log event inserted", boot(t, events, inserted, nonce), evidence.TPMOptions{Nonce: nonce}, shape,
			[]string{"event log replay sha256: PCR4", "extra event 6 EV_EFI_BOOT_SERVICES_APPLICATION"}},
		{"extra event really extended", boot(t, inserted, inserted, nonce), evidence.TPMOptions{Nonce: nonce}, shape,
			[]string{"PCR4 sha256: value differs", "extra event 6 EV_EFI_BOOT_SERVICES_APPLICATION"}},
		{"kernel event really missing", boot(t, without(4), without(4), nonce), evidence.TPMOptions{Nonce: nonce}, shape,
			[]string{"PCR4 sha256: value differs", "missing event (manifest #5 EV_EFI_BOOT_SERVICES_APPLICATION"}},
		{"sha384 bank pinned, not quoted", ref, evidence.TPMOptions{Nonce: nonce}, func() *manifest.Shape {
			s := shapeFor(ref, events)
			s.TPM.PCRs["sha384"] = map[string]string{"4": strings.Repeat("ab", 48)}
			return s
		}(), []string{"PCR4 sha384: bank sha384 is not quoted, but the manifest pins PCR4 in it (predicted)"}},
		{"pinned PCR not quoted", ref, evidence.TPMOptions{Nonce: nonce}, func() *manifest.Shape {
			s := shapeFor(ref, events)
			s.TPM.PCRs["sha256"]["7"] = strings.Repeat("00", 32)
			s.TPM.Basis["7"] = "profile"
			return s
		}(), []string{"PCR7 sha256: PCR7 is not in the quoted sha256 bank, but the manifest pins it (profile)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.AK == nil {
				tc.opts.AK = tc.ev.ak
			}
			r := evidence.VerifyTPM(tc.ev.ev, tc.shape, tc.opts)
			err := r.Err()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("VerifyTPM: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyTPM accepted the evidence")
			}
			if !errors.Is(err, evidence.ErrMismatch) {
				t.Errorf("error %v is not ErrMismatch", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}
