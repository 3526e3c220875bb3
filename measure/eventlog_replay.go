package measure

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// startupLocalitySignature marks the EV_NO_ACTION event carrying the
// locality from which TPM2_Startup was sent (PFP section 10.4.5.3,
// TCG_EfiStartupLocalityEvent). Locality 3 or 4 starts PCR 0 at 3 or 4
// instead of zero.
var startupLocalitySignature = []byte("StartupLocality\x00")

// InitialPCR returns the value PCR pcr holds after TPM2_Startup in bank alg
// for a log: zero, except PCR 0 with a StartupLocality event (PFP section
// 10.4.5.3) and PCRs 17-22, which reset to all ones (PFP section 3.3.4.1,
// dynamic-launch PCRs; no SRTM log extends them).
func (l *EventLog) InitialPCR(alg HashAlg, pcr uint32) []byte {
	v := make([]byte, alg.Size())
	switch {
	case pcr >= 17 && pcr <= 22:
		for i := range v {
			v[i] = 0xff
		}
	case pcr == 0:
		for _, e := range l.Events {
			if e.Type == EvNoAction && len(e.Data) == len(startupLocalitySignature)+1 &&
				bytes.HasPrefix(e.Data, startupLocalitySignature) {
				v[len(v)-1] = e.Data[len(e.Data)-1]
			}
		}
	}
	return v
}

// Extend returns alg(old || digest), the TPM2_PCR_Extend operation (TPM 2.0
// Library Part 1, section 17.2).
func Extend(alg HashAlg, old, digest []byte) []byte {
	return alg.Sum(append(bytes.Clone(old), digest...))
}

// Replay extends every measured event of the log into fresh PCRs of bank alg
// and returns the value of each PCR any event touched. EV_NO_ACTION events
// are not extended (PFP section 10.4.5).
func (l *EventLog) Replay(alg HashAlg) (map[uint32][]byte, error) {
	if alg.Size() == 0 {
		return nil, fmt.Errorf("replay: unknown hash algorithm %s", alg)
	}
	if !slices.Contains(l.Algs(), alg) {
		return nil, fmt.Errorf("replay: log has no %s bank (banks: %s)", alg, algList(l.Algs()))
	}
	pcrs := map[uint32][]byte{}
	for i, e := range l.Events {
		if e.Type == EvNoAction {
			continue
		}
		d := e.Digest(alg)
		if len(d) != alg.Size() {
			return nil, fmt.Errorf("replay: event %d (PCR%d %s): %s digest is %d bytes, want %d", i+1, e.PCR, e.Type, alg, len(d), alg.Size())
		}
		old, ok := pcrs[e.PCR]
		if !ok {
			old = l.InitialPCR(alg, e.PCR)
		}
		pcrs[e.PCR] = Extend(alg, old, d)
	}
	return pcrs, nil
}

// ReplayPCR returns the replayed value of one PCR (its initial value when no
// event extends it).
func (l *EventLog) ReplayPCR(alg HashAlg, pcr uint32) ([]byte, error) {
	pcrs, err := l.Replay(alg)
	if err != nil {
		return nil, err
	}
	if v, ok := pcrs[pcr]; ok {
		return v, nil
	}
	return l.InitialPCR(alg, pcr), nil
}

// VerifyReplay checks the log against PCR values read from a TPM (a quote or
// tpm2_pcrread): every PCR in want must equal the replay. It reports every
// PCR that differs, naming the events that extend it.
func (l *EventLog) VerifyReplay(alg HashAlg, want map[uint32][]byte) error {
	got, err := l.Replay(alg)
	if err != nil {
		return err
	}
	var errs []error
	for _, pcr := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[pcr]
		if !ok {
			g = l.InitialPCR(alg, pcr)
		}
		if bytes.Equal(g, want[pcr]) {
			continue
		}
		idx := l.eventsOf(pcr)
		what := "no event extends it"
		if len(idx) > 0 {
			what = "replay of events " + joinInts(idx)
		}
		errs = append(errs, fmt.Errorf("PCR%d (%s): %s gives %x, the TPM has %x", pcr, alg, what, g, want[pcr]))
	}
	return errors.Join(errs...)
}

// eventsOf returns the indices (header = 0) of the measured events of pcr.
func (l *EventLog) eventsOf(pcr uint32) []int {
	var out []int
	for i, e := range l.Events {
		if e.PCR == pcr && e.Type != EvNoAction {
			out = append(out, i+1)
		}
	}
	return out
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func algList(a []HashAlg) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = x.String()
	}
	return strings.Join(s, ", ")
}
