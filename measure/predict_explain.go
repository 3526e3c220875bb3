package measure

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Explaining a real event log against a prediction.

// Verdict of one event or PCR.
type Verdict string

// Verdicts.
const (
	VerdictMatch      Verdict = "match"
	VerdictDiffer     Verdict = "differ"
	VerdictMissing    Verdict = "missing"    // predicted, absent from the log
	VerdictUnexpected Verdict = "unexpected" // in the log, not predicted
	VerdictUnchecked  Verdict = "unchecked"  // predicted without a value (needs a profile)
)

// EventVerdict compares one event of the real log with its predicted
// counterpart.
type EventVerdict struct {
	// Index is the event's number in the real log (Spec ID = 0); 0 for a
	// missing event.
	Index     int
	Actual    *Event
	Predicted *PredictedEvent
	Verdict   Verdict
	// Hint names the input the event depends on and, where the log shows
	// it, the value that input would need.
	Hint string
}

// PCRVerdict compares one PCR: predicted, replayed from the log, and (when
// given) read from the TPM.
type PCRVerdict struct {
	Alg       HashAlg
	PCR       uint32
	Predicted []byte // nil when not pinned
	Replayed  []byte
	Quoted    []byte // nil when not given
	Verdict   Verdict
	Reason    string
}

// Explanation is the result of Explain.
type Explanation struct {
	Events []EventVerdict
	PCRs   []PCRVerdict
}

// AllMatch reports whether every event and PCR matched (unchecked events
// and not-pinned PCRs do not count as mismatches).
func (x *Explanation) AllMatch() bool {
	for _, e := range x.Events {
		if e.Verdict != VerdictMatch && e.Verdict != VerdictUnchecked {
			return false
		}
	}
	for _, p := range x.PCRs {
		if p.Verdict != VerdictMatch && p.Verdict != VerdictUnchecked {
			return false
		}
	}
	return true
}

// EventsEqual reports whether a real event equals a predicted one: same PCR,
// type, digests in every bank both carry, and event data. The
// ImageLocationInMemory of an image-load event (PFP section 10.4.3) is
// ignored: it is a run-time allocation address that no digest covers.
func EventsEqual(actual, predicted *Event) bool {
	if actual.PCR != predicted.PCR || actual.Type != predicted.Type {
		return false
	}
	for _, d := range predicted.Digests {
		if a := actual.Digest(d.Alg); a != nil && !bytes.Equal(a, d.Value) {
			return false
		}
	}
	return bytes.Equal(maskData(actual), maskData(predicted))
}

func maskData(e *Event) []byte {
	if (e.Type == EvEFIBootServicesApp || e.Type == EvEFIBootServicesDriver || e.Type == EvEFIRuntimeServicesDriver) && len(e.Data) >= 8 {
		b := bytes.Clone(e.Data)
		clear(b[:8])
		return b
	}
	return e.Data
}

// Explain compares a real event log with a prediction, event by event and
// PCR by PCR. quoted holds PCR values read from the TPM (may be nil).
func Explain(p *Prediction, actual *EventLog, quoted map[HashAlg]map[uint32][]byte) *Explanation {
	x := &Explanation{}
	pairs := alignEvents(p.Events, actual.Events)
	for _, pr := range pairs {
		v := EventVerdict{Index: pr.a + 1}
		if pr.a >= 0 {
			v.Actual = &actual.Events[pr.a]
		} else {
			v.Index = 0
		}
		if pr.p >= 0 {
			v.Predicted = &p.Events[pr.p]
		}
		switch {
		case v.Actual == nil:
			v.Verdict, v.Hint = VerdictMissing, missingHint(v.Predicted)
		case v.Predicted == nil:
			v.Verdict, v.Hint = VerdictUnexpected, unexpectedHint(v.Actual)
		case v.Predicted.Source == SourceUnknown:
			v.Verdict, v.Hint = VerdictUnchecked, "not predicted: "+strings.Join(v.Predicted.DependsOn, ", ")+" (give a captured platform profile)"
		case EventsEqual(v.Actual, &v.Predicted.Event):
			v.Verdict = VerdictMatch
		default:
			v.Verdict, v.Hint = VerdictDiffer, differHint(v.Actual, v.Predicted)
			if alt := p.alternative(v.Actual); alt != "" {
				v.Hint += "; " + alt
			}
		}
		x.Events = append(x.Events, v)
	}
	x.PCRs = explainPCRs(p, actual, quoted)
	return x
}

type pair struct{ p, a int }

// alignEvents pairs predicted and actual events: per PCR, a longest common
// subsequence on event type, then merged in real-log order with missing
// events placed after the real event that precedes them in their PCR.
func alignEvents(pred []PredictedEvent, act []Event) []pair {
	pcrs := map[uint32]bool{}
	for _, e := range pred {
		pcrs[e.PCR] = true
	}
	for _, e := range act {
		if e.Type != EvNoAction {
			pcrs[e.PCR] = true
		}
	}
	matchOfAct := map[int]int{}
	var missing []pair // p index, anchor actual index (-1: before all)
	for _, pcr := range slices.Sorted(maps.Keys(pcrs)) {
		var pi, ai []int
		for i, e := range pred {
			if e.PCR == pcr {
				pi = append(pi, i)
			}
		}
		for i, e := range act {
			if e.PCR == pcr && e.Type != EvNoAction {
				ai = append(ai, i)
			}
		}
		m := lcs(len(pi), len(ai), func(i, j int) bool { return sameKind(&pred[pi[i]].Event, &act[ai[j]]) })
		anchor := -1
		for i := range pi {
			if k, ok := m[i]; ok {
				matchOfAct[ai[k]] = pi[i]
				anchor = ai[k]
				continue
			}
			missing = append(missing, pair{pi[i], anchor})
		}
	}
	var out []pair
	emitMissing := func(anchor int) {
		for _, m := range missing {
			if m.a == anchor {
				out = append(out, pair{m.p, -1})
			}
		}
	}
	emitMissing(-1)
	for i, e := range act {
		if e.Type == EvNoAction {
			continue
		}
		p, ok := matchOfAct[i]
		if !ok {
			p = -1
		}
		out = append(out, pair{p, i})
		emitMissing(i)
	}
	return out
}

// sameKind reports whether two events are the same kind of measurement, for
// pairing: same type, and for tagged events the same tag, for variable
// events the same variable, for actions the same string.
func sameKind(a, b *Event) bool {
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case EvEventTag:
		return len(a.Data) >= 4 && len(b.Data) >= 4 && bytes.Equal(a.Data[:4], b.Data[:4])
	case EvEFIVariableDriverConfig, EvEFIVariableBoot, EvEFIVariableBoot2, EvEFIVariableAuthority:
		va, okA := parseVariableData(a.Data)
		vb, okB := parseVariableData(b.Data)
		return okA && okB && va.Vendor == vb.Vendor && va.Name == vb.Name
	case EvEFIAction, EvAction:
		return bytes.Equal(a.Data, b.Data)
	}
	return true
}

// lcs returns a longest common subsequence of two sequences as a map from
// index in the first to index in the second.
func lcs(n, m int, eq func(i, j int) bool) map[int]int {
	t := make([][]int, n+1)
	for i := range t {
		t[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if eq(i, j) {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	out := map[int]int{}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case eq(i, j):
			out[i] = j
			i++
			j++
		case t[i+1][j] >= t[i][j+1]:
			i++
		default:
			j++
		}
	}
	return out
}

func missingHint(p *PredictedEvent) string {
	if p.Type == EvEFIBootServicesApp && p.PCR == 4 {
		return "the kernel image was not measured: OVMF loaded the kernel without a measurement, which happens when Secure Boot is enabled by keys in the VARS template and the kernel is not trusted by db (use a VARS template without Secure Boot keys, or sign the kernel)"
	}
	if p.Type == EvEventTag && len(p.Data) >= 4 && binary.LittleEndian.Uint32(p.Data) == LinuxEventLoadOptions {
		return "the kernel's EFI stub measured no LoadOptions: OVMF started the kernel through its legacy EFI handover path, which it does when LoadImage refuses the kernel (Secure Boot), so the command line is not measured"
	}
	return "expected event absent; depends on " + strings.Join(p.DependsOn, ", ")
}

func unexpectedHint(a *Event) string {
	switch {
	case a.PCR == 2 && (a.Type == EvEFIBootServicesDriver || a.Type == EvEFIPlatformFirmwareBlob):
		return "option ROM measured into PCR2 (a NIC's iPXE ROM: boot with -net none, or romfile= on the device) — VM shape"
	case a.PCR == 1 && a.Type == EvEFIVariableBoot:
		return "extra boot variable " + DescribeEvent(a) + " — VM shape (boot devices)"
	case a.PCR == 5 && a.Type == EvEFIGPTEvent:
		return "GPT of a boot disk measured: not a direct kernel boot"
	case a.PCR == 4 && a.Type == EvEFIBootServicesApp:
		return "an EFI application not in the direct-boot path (boot loader or UEFI shell): boot path differs"
	}
	return "event not in the predicted direct-boot sequence"
}

func differHint(a *Event, p *PredictedEvent) string {
	deps := strings.Join(p.DependsOn, ", ")
	switch p.Type {
	case EvEFIVariableDriverConfig, EvEFIVariableBoot:
		if !bytes.Equal(a.Data, p.Data) {
			return fmt.Sprintf("depends on %s; the log has %s, predicted %s", deps, DescribeEvent(a), DescribeEvent(&p.Event))
		}
	case EvEFIBootServicesApp:
		al, pl := imageLength(a.Data), imageLength(p.Data)
		if al != pl {
			return fmt.Sprintf("depends on %s; the firmware loaded a %d-byte image, the kernel input is %d bytes", deps, al, pl)
		}
		return "depends on " + deps + "; same image length, so the kernel bytes, initrd size, memory below 4G or a vga= option differ"
	case EvEFIPlatformFirmwareBlob:
		if !bytes.Equal(a.Data, p.Data) {
			return fmt.Sprintf("depends on %s; the log has %s, predicted %s", deps, DescribeEvent(a), DescribeEvent(&p.Event))
		}
		if p.Source == SourceProfile {
			return "depends on " + deps + "; the captured profile does not match this VM shape or firmware (re-run mkcvm capture)"
		}
		return "depends on " + deps + "; the booted firmware volume hashes to " + plainDigests(a) + " (a different OVMF build)"
	case EvEventTag:
		if len(p.Data) >= 4 && binary.LittleEndian.Uint32(p.Data) == LinuxEventInitrd {
			return "depends on the initrd bytes: the digest is the plain hash of the initrd file, so the booted initrd has " + plainDigests(a) + "; the input initrd would need that hash"
		}
		if len(p.Data) >= 4 && binary.LittleEndian.Uint32(p.Data) == LinuxEventLoadOptions {
			return "depends on the cmdline (-append) and whether an initrd was given: the guest's LoadOptions differ from " + p.Description
		}
	case EvEFIAction, EvSeparator, EvSCRTMVersion:
		if !bytes.Equal(a.Data, p.Data) {
			return fmt.Sprintf("depends on %s; the log has %q, predicted %q", deps, a.Data, p.Data)
		}
	}
	return "depends on " + deps
}

// plainDigests lists an event's digests as "sha256:<hex>, ..." for the
// banks a verifier compares files with.
func plainDigests(e *Event) string {
	var out []string
	for _, a := range []HashAlg{AlgSHA256, AlgSHA384} {
		if d := e.Digest(a); d != nil {
			out = append(out, a.String()+":"+hex.EncodeToString(d))
		}
	}
	return strings.Join(out, ", ")
}

func imageLength(d []byte) uint64 {
	if len(d) < 16 {
		return 0
	}
	return binary.LittleEndian.Uint64(d[8:])
}

func explainPCRs(p *Prediction, actual *EventLog, quoted map[HashAlg]map[uint32][]byte) []PCRVerdict {
	var out []PCRVerdict
	for _, alg := range p.Algs {
		replay, err := actual.Replay(alg)
		if err != nil {
			out = append(out, PCRVerdict{Alg: alg, Verdict: VerdictDiffer, Reason: err.Error()})
			continue
		}
		for pcr := range uint32(24) {
			pred, pinned := p.PCRs[alg][pcr]
			q := quoted[alg][pcr]
			if !pinned && (q == nil || pcr > 10) {
				continue
			}
			v := PCRVerdict{Alg: alg, PCR: pcr, Predicted: pred, Quoted: q, Verdict: VerdictMatch}
			if r, ok := replay[pcr]; ok {
				v.Replayed = r
			} else if pcr < 10 {
				v.Replayed = actual.InitialPCR(alg, pcr)
			}
			var why []string
			if pinned && v.Replayed != nil && !bytes.Equal(pred, v.Replayed) {
				why = append(why, "log replay differs from the prediction")
			}
			if q != nil && v.Replayed != nil && !bytes.Equal(q, v.Replayed) {
				why = append(why, "log replay differs from the TPM value (the log does not describe this TPM's PCR)")
			}
			if q != nil && pinned && !bytes.Equal(q, pred) {
				why = append(why, "TPM value differs from the prediction")
			}
			if !pinned {
				v.Verdict, v.Reason = VerdictUnchecked, "not pinned: "+p.Why[pcr]
			} else if v.Replayed == nil && q == nil {
				// Nothing to compare the prediction with: this log has no
				// events for the PCR (e.g. IMA's PCR 10 or the runner's
				// workload PCR) and no TPM value was given.
				v.Verdict, v.Reason = VerdictUnchecked, "no events for this PCR in the log and no TPM value given (pass the quoted PCRs)"
			}
			if len(why) > 0 {
				v.Verdict, v.Reason = VerdictDiffer, strings.Join(why, "; ")
			}
			out = append(out, v)
		}
	}
	return out
}

// alternative tests explanations of a differing kernel event against the
// prediction's inputs: the firmware hashed the kernel file unmodified (the
// VMM did not edit the setup header, as for SEV guests or other VMMs), or
// QEMU patched it for a boot without an initrd.
func (p *Prediction) alternative(a *Event) string {
	in := p.in
	if in == nil || a.Type != EvEFIBootServicesApp || a.PCR != 4 {
		return ""
	}
	alg := AlgSHA256
	want := a.Digest(alg)
	if want == nil {
		return ""
	}
	if d, err := PEImageDigest("kernel", in.Kernel, alg, PadNone); err == nil && bytes.Equal(d, want) {
		return "the log's digest is the Authenticode hash of the unmodified kernel file: the VMM did not patch the setup header (not a QEMU direct boot, or an SEV guest)"
	}
	below, err := QEMUBelow4G(in.Machine, in.MemoryMiB)
	if err != nil {
		return ""
	}
	if d, err := KernelDigest("kernel", in.Kernel, QEMULinuxLoad{Cmdline: in.Cmdline, BelowFourG: below}, alg); err == nil && bytes.Equal(d, want) {
		return "the log's digest is this kernel as QEMU patches it for a boot without -initrd"
	}
	// Common memory sizes: the initrd address QEMU writes depends on them.
	for _, mem := range []int{256, 512, 768, 1024, 1536, 2048, 2560, 3072, 4096} {
		if mem == in.MemoryMiB {
			continue
		}
		b, err := QEMUBelow4G(in.Machine, mem)
		if err != nil || b == below {
			continue
		}
		load := QEMULinuxLoad{Cmdline: in.Cmdline, Initrd: in.Initrd != nil, InitrdSize: int64(len(in.Initrd)), BelowFourG: b}
		if d, err := KernelDigest("kernel", in.Kernel, load, alg); err == nil && bytes.Equal(d, want) {
			return fmt.Sprintf("the log's digest is this kernel and initrd size with -m %d: the VM ran with %d MiB, the shape says %d MiB", mem, mem, in.MemoryMiB)
		}
	}
	return ""
}
