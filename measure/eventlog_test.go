package measure

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/ovmf"
)

// Fixtures from a real boot (see testdata/provenance/tpm.md): QEMU 7.2 q35,
// 1024 MiB, 1 vCPU, Debian OVMF 2022.11 4M CODE/VARS, swtpm 0.7.1, Debian
// 6.1 kernel, the event log and PCRs dumped by cmd/mkcvm-init.
const (
	fixtureLog     = "testdata/tpm/q35-1024m-1cpu.eventlog"
	fixturePCRs    = "testdata/tpm/q35-1024m-1cpu.pcrs"
	fixtureProfile = "testdata/tpm/q35-1024m-1cpu.profile.json"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func fixturePCRValues(t testing.TB) map[HashAlg]map[uint32][]byte {
	t.Helper()
	v, err := ParsePCRValues(fixturePCRs, string(readFixture(t, fixturePCRs)), AlgSHA256)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseRealEventLog(t *testing.T) {
	raw := readFixture(t, fixtureLog)
	l, err := ParseEventLog(fixtureLog, raw)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(l.Events), 24; got != want {
		t.Fatalf("%d events, want %d (tpm2_eventlog numbers 0..24)", got, want)
	}
	if diff := cmp.Diff([]HashAlg{AlgSHA1, AlgSHA256, AlgSHA384, AlgSHA512}, l.Algs()); diff != "" {
		t.Errorf("banks (-want +got):\n%s", diff)
	}
	enc, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, raw) {
		t.Errorf("re-encoded log differs from the firmware's bytes")
	}
	// Replay equals the PCRs the guest read from swtpm.
	quoted := fixturePCRValues(t)
	for _, a := range l.Algs() {
		want := map[uint32][]byte{}
		for pcr := range uint32(10) {
			want[pcr] = quoted[a][pcr]
		}
		if err := l.VerifyReplay(a, want); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}

func TestVerifyReplayNamesEvents(t *testing.T) {
	l, err := ParseEventLog(fixtureLog, readFixture(t, fixtureLog))
	if err != nil {
		t.Fatal(err)
	}
	quoted := fixturePCRValues(t)
	want := map[uint32][]byte{4: bytes.Repeat([]byte{0xaa}, 32), 7: quoted[AlgSHA256][7], 8: bytes.Repeat([]byte{1}, 32)}
	err = l.VerifyReplay(AlgSHA256, want)
	if err == nil {
		t.Fatal("VerifyReplay accepted a wrong PCR4")
	}
	for _, s := range []string{"PCR4 (sha256): replay of events 10, 13, 18", "PCR8 (sha256): no event extends it"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
	if strings.Contains(err.Error(), "PCR7") {
		t.Errorf("error %q mentions the matching PCR7", err)
	}
}

// testLog builds a small log with the encoder.
func testLog() *EventLog {
	algs := []HashAlg{AlgSHA256, AlgSHA384}
	l := &EventLog{SpecID: NewSpecID(algs...)}
	l.Events = append(l.Events,
		NewEvent(0, EvSCRTMVersion, []byte{0, 0}, []byte{0, 0}, algs),
		NewEvent(4, EvEFIAction, []byte("Calling EFI Application from Boot Option"), []byte("Calling EFI Application from Boot Option"), algs),
		NewEvent(7, EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, algs),
	)
	return l
}

func TestEventLogRoundTrip(t *testing.T) {
	l := testLog()
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEventLog("t", b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// Trailing 0xff fill of a firmware log area is not an event.
	got, err = ParseEventLog("t", append(b, bytes.Repeat([]byte{0xff}, 64)...))
	if err != nil || len(got.Events) != 3 {
		t.Errorf("with 0xff padding: %d events, err %v", len(got.Events), err)
	}
}

func TestParseEventLogErrors(t *testing.T) {
	good, err := testLog().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	specEnd := SizeofPCClientPCREventHeader + int(binary.LittleEndian.Uint32(good[28:]))
	ev1 := specEnd // first TCG_PCR_EVENT2
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "offset 0x0: event 0: PCRIndex: truncated"},
		{"truncated header", good[:20], "event 0: Digest: truncated"},
		{"not spec id type", mod(put32(4, 0x8)), "event 0: EventType: 0x8, want EV_NO_ACTION"},
		{"bad signature", mod(func(b []byte) []byte { b[32] = 'X'; return b }), "TCG_EfiSpecIDEvent.signature"},
		{"zero algorithms", mod(put32(32+24, 0)), "numberOfAlgorithms: 0"},
		{"wrong digest size", mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[32+30:], 20); return b }), "digestSizes[0].digestSize: 20 for sha256, want 32"},
		{"truncated event", good[:ev1+13], "event 1: Digests[0].hashAlg: truncated"},
		{"unknown event type", mod(put32(ev1+4, 0x12345)), "offset 0x" + hex.EncodeToString([]byte{byte(ev1 + 4)}) + ": event 1: EventType: unknown event type 0x00012345"},
		{"digest count", mod(put32(ev1+8, 3)), "event 1: Digests.count: 3, Spec ID event lists 2 banks"},
		{"digest alg", mod(func(b []byte) []byte { binary.LittleEndian.PutUint16(b[ev1+12:], 0x4); return b }), "event 1: Digests[0].hashAlg: 0x0004, Spec ID event lists sha256 here"},
		{"huge event size", mod(put32(ev1+12+2+32+2+48, 0xfffffff0)), "event 1: EventSize: 4294967280 bytes"},
		{"event runs past end", mod(put32(ev1+12+2+32+2+48, 1000)), "event 1: Event: truncated: need 1000 bytes"},
		{"garbage after events", append(bytes.Clone(good), 1, 2, 3), "event 4: PCRIndex: truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseEventLog("log.bin", tc.in)
			if err == nil {
				t.Fatalf("ParseEventLog accepted it")
			}
			var fe *ovmf.FormatError
			if !errors.As(err, &fe) {
				t.Errorf("error %T is not a *ovmf.FormatError", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "log.bin: offset 0x") {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestMarshalRejectsBankMismatch(t *testing.T) {
	l := testLog()
	l.Events[1].Digests = l.Events[1].Digests[:1]
	if _, err := l.MarshalBinary(); err == nil || !strings.Contains(err.Error(), "event 2") {
		t.Errorf("MarshalBinary error = %v, want one naming event 2", err)
	}
}

func TestReplayStartupLocality(t *testing.T) {
	algs := []HashAlg{AlgSHA256}
	l := &EventLog{SpecID: NewSpecID(algs...)}
	loc := append([]byte("StartupLocality\x00"), 3)
	l.Events = append(l.Events, Event{PCR: 0, Type: EvNoAction, Digests: []Digest{{AlgSHA256, make([]byte, 32)}}, Data: loc},
		NewEvent(0, EvSeparator, []byte{0, 0, 0, 0}, []byte{0, 0, 0, 0}, algs))
	got, err := l.ReplayPCR(AlgSHA256, 0)
	if err != nil {
		t.Fatal(err)
	}
	init := make([]byte, 32)
	init[31] = 3
	if want := Extend(AlgSHA256, init, AlgSHA256.Sum([]byte{0, 0, 0, 0})); !bytes.Equal(got, want) {
		t.Errorf("PCR0 = %x, want %x (locality 3 start)", got, want)
	}
}

func FuzzParseEventLog(f *testing.F) {
	good, _ := testLog().MarshalBinary()
	f.Add(good)
	if b, err := os.ReadFile(fixtureLog); err == nil {
		f.Add(b)
	}
	for _, n := range []int{0, 20, 40, 90, len(good) - 1} { // truncations like the table test's
		f.Add(good[:n])
	}
	f.Add(append(bytes.Clone(good), bytes.Repeat([]byte{0xff}, 16)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		l, err := ParseEventLog("fuzz", b)
		if err != nil {
			return
		}
		enc, err := l.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed log does not encode: %v", err)
		}
		l2, err := ParseEventLog("fuzz", enc)
		if err != nil {
			t.Fatalf("re-encoded log does not parse: %v", err)
		}
		if diff := cmp.Diff(l, l2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		for _, a := range l.Algs() {
			if a.Size() != 0 {
				_, _ = l.Replay(a)
			}
		}
		for i := range l.Events {
			_ = DescribeEvent(&l.Events[i])
		}
	})
}
