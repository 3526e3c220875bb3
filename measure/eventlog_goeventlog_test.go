package measure

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
)

// goEventlogBanks are the banks go-eventlog (the version go-tpm-tools
// v0.4.10 selects) can replay: its register.HashAlg knows SHA-1, SHA-256 and
// SHA-384 only. It parses SHA-512 digests but stores them with hash 0, so
// Events(HashAlg(0x0d)) returns them (the only digest with an unknown hash)
// and they are compared too, but cannot be replayed.
var goEventlogBanks = []HashAlg{AlgSHA1, AlgSHA256, AlgSHA384}

// crossCheckGoEventlog parses raw with go-eventlog's TCG parser and checks
// it against our parse l: event count, PCR index, type and every bank's
// digest per event. Then it replays with go-eventlog against each bank of
// each PCR set in pcrSets (only PCRs the log extends) and requires no error
// and every measured event verified with our digest.
func crossCheckGoEventlog(t *testing.T, raw []byte, l *EventLog, pcrSets map[string]map[HashAlg]map[uint32][]byte) {
	t.Helper()
	gl, err := tcg.ParseEventLog(raw, tcg.ParseOpts{})
	if err != nil {
		t.Fatalf("go-eventlog parse: %v", err)
	}
	for _, a := range l.Algs() {
		ge := gl.Events(register.HashAlg(a))
		if len(ge) != len(l.Events) {
			t.Fatalf("%s: go-eventlog has %d events, we have %d", a, len(ge), len(l.Events))
		}
		for i, e := range l.Events {
			g := ge[i]
			if uint32(g.Index) != e.PCR || uint32(g.Type) != uint32(e.Type) {
				t.Errorf("event %d: go-eventlog PCR%d %s, ours PCR%d %s", i+1, g.Index, g.Type, e.PCR, e.Type)
			}
			if d := e.Digest(a); len(d) == 0 || !bytes.Equal(g.Digest, d) {
				t.Errorf("event %d %s digest: go-eventlog %x, ours %x", i+1, a, g.Digest, d)
			}
			if !bytes.Equal(g.Data, e.Data) {
				t.Errorf("event %d: event data differs", i+1)
			}
		}
	}
	measured := map[uint32]int{}
	for _, e := range l.Events {
		if e.Type != EvNoAction {
			measured[e.PCR]++
		}
	}
	if len(measured) == 0 {
		t.Fatal("log extends no PCR")
	}
	for _, name := range slices.Sorted(maps.Keys(pcrSets)) {
		for _, a := range goEventlogBanks {
			vals := pcrSets[name][a]
			var mrs []register.MR
			want := 0
			for _, pcr := range slices.Sorted(maps.Keys(measured)) {
				v, ok := vals[pcr]
				if !ok {
					continue
				}
				mrs = append(mrs, register.PCR{Index: int(pcr), Digest: v, DigestAlg: a.Hash()})
				want += measured[pcr]
			}
			if len(mrs) == 0 {
				t.Errorf("%s %s: no PCR values for the log's PCRs", name, a)
				continue
			}
			evs, err := gl.Verify(mrs)
			if err != nil {
				t.Errorf("%s %s: go-eventlog replay: %v", name, a, err)
				continue
			}
			// A workaround go-eventlog applied would change the events.
			if len(evs) != want {
				t.Errorf("%s %s: go-eventlog verified %d events, want %d", name, a, len(evs), want)
			}
			for _, g := range evs {
				e := l.Events[g.Num()-1]
				if uint32(g.Index) != e.PCR || !bytes.Equal(g.Digest, e.Digest(a)) {
					t.Errorf("%s %s: verified event %d differs from ours", name, a, g.Num())
				}
			}
			// Not vacuous: a wrong PCR value fails go-eventlog's replay.
			bad := slices.Clone(mrs)
			p := bad[0].(register.PCR)
			p.Digest = bytes.Clone(p.Digest)
			p.Digest[0] ^= 1
			bad[0] = p
			if _, err := gl.Verify(bad); err == nil {
				t.Errorf("%s %s: go-eventlog accepted a wrong PCR%d", name, a, p.Index)
			}
		}
	}
}

// ourReplay returns our replay of l in go-eventlog's banks.
func ourReplay(t *testing.T, l *EventLog) map[HashAlg]map[uint32][]byte {
	t.Helper()
	out := map[HashAlg]map[uint32][]byte{}
	for _, a := range goEventlogBanks {
		v, err := l.Replay(a)
		if err != nil {
			t.Fatal(err)
		}
		out[a] = v
	}
	return out
}

// TestGoEventlogRealLogs cross-checks our parser and replay with
// go-eventlog's on the real QEMU+OVMF+swtpm boot logs, replaying against our
// replay and against the PCRs swtpm reported in the same boot.
func TestGoEventlogRealLogs(t *testing.T) {
	for _, name := range []string{"q35-1024m-1cpu", "q35-1024m-1cpu-secureboot-ms"} {
		t.Run(name, func(t *testing.T) {
			logName, pcrName := "testdata/tpm/"+name+".eventlog", "testdata/tpm/"+name+".pcrs"
			raw := readFixture(t, logName)
			l, err := ParseEventLog(logName, raw)
			if err != nil {
				t.Fatal(err)
			}
			booted, err := ParsePCRValues(pcrName, string(readFixture(t, pcrName)), AlgSHA256)
			if err != nil {
				t.Fatal(err)
			}
			crossCheckGoEventlog(t, raw, l, map[string]map[HashAlg]map[uint32][]byte{
				"our replay": ourReplay(t, l),
				"booted":     booted,
			})
		})
	}
}

// TestGoEventlogPredictedLog cross-checks the log our encoder writes for the
// default recipe's tpm-q35 shape (predictFixture: q35, 1024 MiB, 1 vCPU,
// captured profile). go-eventlog replays it against our replay and against
// the booted PCRs 0-8, which the prediction matches (its initrd bytes are
// not the booted ones, so PCR 9 is left out).
func TestGoEventlogPredictedLog(t *testing.T) {
	p, _ := predictFixture(t)
	l, err := p.Log()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	booted := fixturePCRValues(t)
	for _, a := range goEventlogBanks {
		for pcr := range booted[a] {
			if pcr > 8 {
				delete(booted[a], pcr)
			}
		}
	}
	crossCheckGoEventlog(t, raw, l, map[string]map[HashAlg]map[uint32][]byte{
		"our replay": ourReplay(t, l),
		"booted 0-8": booted,
	})
}
