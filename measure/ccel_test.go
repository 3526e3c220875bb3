package measure_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// predictedCCEL predicts the known-answer boot with a measuring firmware
// and returns the prediction and its encoded CC event log.
func predictedCCEL(t *testing.T) (*measure.TDXResult, []byte) {
	t.Helper()
	in := tdxDebianInputs(t)
	in.FirmwareMeasures, in.StubMeasures = boolp(true), boolp(true)
	r, err := measure.TDX(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := measure.MarshalCCEL(r.EventLog())
	if err != nil {
		t.Fatal(err)
	}
	return r, b
}

// syntheticCCEL is a small CC event log without external inputs: a Spec ID
// event (SHA-384 only), then one event per RTMR.
func syntheticCCEL(t testing.TB) []byte {
	algs := []measure.HashAlg{measure.AlgSHA384}
	l := &measure.EventLog{SpecID: measure.NewSpecID(measure.AlgSHA384), Events: []measure.Event{
		measure.NewEvent(1, measure.EvEFIPlatformFirmwareBlob2, append([]byte{3}, "CFV"...), []byte("vars"), algs),
		measure.NewEvent(2, measure.EvEFIAction, []byte(measure.ActionCallingEFIApplication), []byte(measure.ActionCallingEFIApplication), algs),
		measure.NewEvent(2, measure.EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, algs),
		measure.NewEvent(3, measure.EvEventTag, []byte{0xec, 0x22, 0x3b, 0x8f, 3, 0, 0, 0, 'a', 'b', 0}, []byte("initrd"), algs),
		measure.NewEvent(4, measure.EvEventTag, []byte{}, []byte("runtime"), algs),
	}}
	b, err := measure.MarshalCCEL(l)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCCELReplayMatchesPrediction encodes the predicted log, pads it like a
// firmware log area, parses it back and replays it to the predicted RTMRs.
func TestCCELReplayMatchesPrediction(t *testing.T) {
	r, b := predictedCCEL(t)
	b = append(b, bytes.Repeat([]byte{0xff}, 512)...)
	l, err := measure.ParseCCEL("CCEL", b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := measure.ReplayRTMRs(l)
	if err != nil {
		t.Fatal(err)
	}
	// RTMR0 is not pinned without a profile, so compare 1..3, which the
	// independent known answers fix.
	for i, want := range []string{"", tdxRTMR1, tdxRTMR2, tdxZero} {
		if i > 0 && hex.EncodeToString(got[i][:]) != want {
			t.Errorf("replayed RTMR%d = %x, want %s", i, got[i], want)
		}
	}
	x, err := measure.ExplainCCEL(l, r)
	if err != nil {
		t.Fatal(err)
	}
	if n := x.Mismatches(); n != 0 {
		var out strings.Builder
		x.WriteText(&out)
		t.Errorf("%d mismatches:\n%s", n, out.String())
	}
}

// TestExplainCCELMismatch changes the log against the prediction: one
// digest differs, one event is missing, one is unexpected.
func TestExplainCCELMismatch(t *testing.T) {
	r, b := predictedCCEL(t)
	l, err := measure.ParseCCEL("CCEL", b)
	if err != nil {
		t.Fatal(err)
	}
	// Event 3 is the "Calling EFI Application" action: change its digest.
	l.Events[2].Digests[0].Value = make([]byte, 48)
	// Drop the last RTMR2 event (the initrd) and add an RTMR3 event.
	var kept []measure.Event
	for i, e := range l.Events {
		if i == len(l.Events)-1 {
			continue
		}
		kept = append(kept, e)
	}
	l.Events = append(kept, measure.NewEvent(4, measure.EvEventTag, nil, []byte("x"), []measure.HashAlg{measure.AlgSHA384}))
	x, err := measure.ExplainCCEL(l, r)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := x.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, s := range []string{`"Calling EFI Application from Boot Option"  [differs, predicted 77a0dab2`, "[unexpected]", "[missing, predicted", "RTMR1 replay", "DIFFERS from predicted", "RTMR0 replay", "(not pinned)", `firmware blob "Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)"`} {
		if !strings.Contains(text, s) {
			t.Errorf("explanation lacks %q:\n%s", s, text)
		}
	}
	// differs + missing + unexpected rows, RTMR1/2/3 replays.
	if n := x.Mismatches(); n != 6 {
		t.Errorf("Mismatches = %d, want 6:\n%s", n, text)
	}
}

func TestExplainCCELWithoutPrediction(t *testing.T) {
	l, err := measure.ParseCCEL("CCEL", syntheticCCEL(t))
	if err != nil {
		t.Fatal(err)
	}
	x, err := measure.ExplainCCEL(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	x.WriteText(&out)
	for _, s := range []string{"RTMR0 EV_EFI_PLATFORM_FIRMWARE_BLOB2", `tagged 0x8f3b22ec "ab"`, "separator", "RTMR3 replay"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("explanation lacks %q:\n%s", s, out.String())
		}
	}
	if x.Mismatches() != 0 {
		t.Errorf("Mismatches = %d without a prediction", x.Mismatches())
	}
}

// TestTDXProfile pins RTMR0 from a captured log and checks its CFV event
// against the firmware.
func TestTDXProfile(t *testing.T) {
	fw := ovmftest.DebianOVMF(t)
	vars := fw[:0x20000]
	algs := []measure.HashAlg{measure.AlgSHA384}
	cfvData := append([]byte{3}, "CFV"...)
	mk := func(cfvMeasured []byte) *measure.EventLog {
		return &measure.EventLog{SpecID: measure.NewSpecID(measure.AlgSHA384), Events: []measure.Event{
			measure.NewEvent(1, measure.EvEFIHandoffTables2, append([]byte{9}, "TdxTable\x00"...), []byte("td hob"), algs),
			measure.NewEvent(1, measure.EvEFIPlatformFirmwareBlob2, cfvData, cfvMeasured, algs),
			measure.NewEvent(1, measure.EvPlatformConfigFlags, []byte("ACPI DATA"), []byte("tables"), algs),
			measure.NewEvent(2, measure.EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, algs), // ignored: not RTMR0
		}}
	}
	in := tdxDebianInputs(t)
	in.FirmwareMeasures, in.StubMeasures = boolp(true), boolp(true)
	in.ProfileName, in.Profile = "captured.ccel", mk(vars)
	r, err := measure.TDX(in)
	if err != nil {
		t.Fatal(err)
	}
	if r.Basis[0] != measure.RTMRProfile {
		t.Fatalf("Basis[0] = %s, want profile", r.Basis[0])
	}
	// Independent replay of the three RTMR0 digests (sha384 of the
	// measured bytes above).
	want := replaySHA384(t, []byte("td hob"), vars, []byte("tables"))
	if r.RTMR[0] != want {
		t.Errorf("RTMR0 = %x, want %x", r.RTMR[0], want)
	}
	in.FirmwareMeasures = boolp(false)
	if _, err := measure.TDX(in); err == nil || !strings.Contains(err.Error(), "no CC measurement driver") {
		t.Errorf("profile with a non-measuring firmware: %v", err)
	}
	in.FirmwareMeasures = boolp(true)
	in.Profile = mk([]byte("other vars"))
	if _, err := measure.TDX(in); err == nil || !strings.Contains(err.Error(), "captured with other firmware") {
		t.Errorf("mismatching CFV: %v", err)
	}
}

// replaySHA384 extends sha384(m) for each m into a zero register, written
// out with the standard library only.
func replaySHA384(t *testing.T, ms ...[]byte) [48]byte {
	t.Helper()
	var r [48]byte
	for _, m := range ms {
		d := sha384Sum(m)
		r = sha384Sum(append(r[:], d[:]...))
	}
	return r
}

func TestParseCCELErrors(t *testing.T) {
	good := syntheticCCEL(t)
	// Offsets: header record 32 + Spec ID data; first event follows.
	specLen := int(binary.LittleEndian.Uint32(good[28:32]))
	ev1 := 32 + specLen
	sha256Log, err := (&measure.EventLog{SpecID: measure.NewSpecID(measure.AlgSHA256), Events: []measure.Event{
		measure.NewEvent(1, measure.EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, []measure.HashAlg{measure.AlgSHA256}),
	}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want []string
	}{
		{"truncated", good[:len(good)-5], []string{"CCEL: offset 0x", "truncated"}},
		{"truncated digest", good[:ev1+20], []string{"event 1", "truncated"}},
		{"unknown event type", func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint32(b[ev1+4:], 0x7777)
			return b
		}(), []string{"event 1", "unknown event type 0x00007777"}},
		{"MR index 0", func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint32(b[ev1:], 0)
			return b
		}(), []string{"event 1", "MR index 0"}},
		{"MR index 5", func() []byte {
			b := bytes.Clone(good)
			binary.LittleEndian.PutUint32(b[ev1:], 5)
			return b
		}(), []string{"MR index 5"}},
		{"no sha384 bank", sha256Log, []string{"no sha384 bank"}},
		{"empty", nil, []string{"truncated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := measure.ParseCCEL("CCEL", tc.b)
			if err == nil {
				t.Fatal("parsed")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

// FuzzParseCCEL: never panic; a log that parses replays, re-encodes to a
// log that parses to the same value, and can be explained.
func FuzzParseCCEL(f *testing.F) {
	f.Add(syntheticCCEL(f))
	f.Add(syntheticCCEL(f)[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		l, err := measure.ParseCCEL("fuzz", b)
		if err != nil {
			return
		}
		if _, err := measure.ReplayRTMRs(l); err != nil {
			t.Fatalf("replay of a parsed log: %v", err)
		}
		if _, err := measure.ExplainCCEL(l, nil); err != nil {
			t.Fatalf("explain of a parsed log: %v", err)
		}
		enc, err := measure.MarshalCCEL(l)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		again, err := measure.ParseCCEL("fuzz", enc)
		if err != nil {
			t.Fatalf("parsing re-encoded log: %v", err)
		}
		if d := cmp.Diff(l, again); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}

func ccelTable() *measure.CCELTable {
	t := &measure.CCELTable{CCType: measure.CCELCCTypeTDX, LAML: 0x10000, LASA: 0x7e000000}
	copy(t.Header[:], "CCEL\x38\x00\x00\x00\x01\x00BOCHS BXPC    \x01\x00\x00\x00BXPC\x01\x00\x00\x00")
	return t
}

func TestParseCCELTable(t *testing.T) {
	b, err := ccelTable().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := measure.ParseCCELTable("CCEL", b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.MarshalBinary()
	if !bytes.Equal(again, b) || got.LASA != 0x7e000000 || got.LAML != 0x10000 {
		t.Errorf("round trip: %+v", got)
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   string
	}{
		{"short", func(b []byte) []byte { return b[:40] }, "CCEL.Length"},
		{"signature", func(b []byte) []byte { b[0] = 'X'; return b }, "CCEL.Signature"},
		{"checksum", func(b []byte) []byte { b[50]++; return b }, "CCEL.Checksum"},
		{"reserved", func(b []byte) []byte { b[38] = 1; b[9]--; return b }, "offset 0x26: CCEL.Reserved"},
		{"type", func(b []byte) []byte { b[36] = 1; b[9]++; return b }, "CCEL.CCType"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := measure.ParseCCELTable("CCEL", tc.mutate(bytes.Clone(b)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
			if tc.name == "checksum" && !errors.Is(err, measure.ErrBadChecksum) {
				t.Errorf("not ErrBadChecksum: %v", err)
			}
		})
	}
}

// FuzzParseCCELTable: never panic; a table that parses re-encodes to the
// same bytes.
func FuzzParseCCELTable(f *testing.F) {
	b, _ := ccelTable().MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		tab, err := measure.ParseCCELTable("fuzz", b)
		if err != nil {
			var fe *ovmf.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("not a FormatError: %v", err)
			}
			return
		}
		enc, err := tab.MarshalBinary()
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("round trip differs: %v", err)
		}
	})
}

// TestExplainCCELWorkloadRTMR: a predicted RTMR3 made of the runner's
// workload events (not in the CC event log) is not compared with the CCEL
// replay.
func TestExplainCCELWorkloadRTMR(t *testing.T) {
	l, err := measure.ParseCCEL("CCEL", syntheticCCEL(t))
	if err != nil {
		t.Fatal(err)
	}
	pred := &measure.TDXResult{Boot: true, Basis: [4]measure.RTMRBasis{"not-pinned", "not-pinned", "not-pinned", "predicted"}}
	pred.RTMR[3][0] = 1
	x, err := measure.ExplainCCEL(l, pred)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	x.WriteText(&out)
	if x.Mismatches() != 0 || !strings.Contains(out.String(), "outside the CC event log") {
		t.Errorf("Mismatches = %d:\n%s", x.Mismatches(), out.String())
	}
}
