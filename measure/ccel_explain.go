package measure

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"unicode/utf16"
)

// Explaining a real CC event log against a prediction (for `mkcvm
// explain`).

// CCELRow is one line of an explanation: an event of the real log, or a
// predicted event the log lacks.
type CCELRow struct {
	Index   int    // event number in the real log (Spec ID header = 0); -1 for a missing event
	MRIndex uint32 // CC MR index (1..4 = RTMR0..3)
	Type    EventType
	Digest  []byte // SHA-384 in the real log (nil for a missing event)
	What    string // what the event measures
	// Status is "match", "differs" (prediction has another digest at this
	// position), "unexpected" (no predicted event at this position),
	// "missing" (predicted, absent from the log) or "" (no prediction).
	Status   string
	Expected []byte // predicted digest when Status is differs or missing
}

// CCELExplanation is a CC event log laid against a prediction.
type CCELExplanation struct {
	Rows      []CCELRow
	Replayed  [NumRTMRs][RTMRSize]byte // RTMRs the real log replays to
	Predicted *TDXResult               // nil when explained without a prediction
}

// ExplainCCEL describes every event of the CC event log l and, when pred
// carries a boot prediction, compares each RTMR's events position by
// position with the predicted ones.
func ExplainCCEL(l *EventLog, pred *TDXResult) (*CCELExplanation, error) {
	x := &CCELExplanation{Predicted: pred}
	var err error
	if x.Replayed, err = ReplayRTMRs(l); err != nil {
		return nil, err
	}
	var want [NumRTMRs][]CCEvent
	if pred != nil {
		for _, e := range pred.Events {
			if i := RTMRIndex(e.MRIndex); i >= 0 {
				want[i] = append(want[i], e)
			}
		}
	}
	var pos [NumRTMRs]int
	x.Rows = append(x.Rows, CCELRow{Index: 0, Type: EvNoAction, What: "Spec ID event (" + algList(l.Algs()) + ")"})
	for i, e := range l.Events {
		if e.Type == EvNoAction {
			x.Rows = append(x.Rows, CCELRow{Index: i + 1, MRIndex: e.PCR, Type: e.Type, What: describeCCEvent(e)})
			continue
		}
		row := CCELRow{Index: i + 1, MRIndex: e.PCR, Type: e.Type, Digest: e.Digest(AlgSHA384), What: describeCCEvent(e)}
		r := RTMRIndex(e.PCR)
		if r >= 0 && x.comparable(r) {
			if p := pos[r]; p < len(want[r]) {
				w := want[r][p]
				row.Status, row.Expected = "differs", w.Digest[:]
				if bytes.Equal(row.Digest, w.Digest[:]) && w.Type == e.Type {
					row.Status, row.Expected = "match", nil
				}
			} else {
				row.Status = "unexpected"
			}
			pos[r]++
		}
		x.Rows = append(x.Rows, row)
	}
	for r := range NumRTMRs {
		if !x.comparable(r) {
			continue
		}
		for _, w := range want[r][min(pos[r], len(want[r])):] {
			x.Rows = append(x.Rows, CCELRow{Index: -1, MRIndex: w.MRIndex, Type: w.Type, What: w.Description, Status: "missing", Expected: w.Digest[:]})
		}
	}
	return x, nil
}

// Mismatches counts rows that disagree with the prediction and RTMRs whose
// replay differs from the predicted value.
func (x *CCELExplanation) Mismatches() int {
	n := 0
	for _, r := range x.Rows {
		if r.Status == "differs" || r.Status == "unexpected" || r.Status == "missing" {
			n++
		}
	}
	if p := x.Predicted; p != nil && p.Boot {
		for i := range NumRTMRs {
			if x.comparable(i) && p.RTMR[i] != x.Replayed[i] {
				n++
			}
		}
	}
	return n
}

// comparable reports whether RTMR i's predicted value can be checked
// against the CC event log's replay: it is pinned, and it is not made of
// events outside the CC event log (the runner's RTMR3 workload events,
// predicted as a value without CC events).
func (x *CCELExplanation) comparable(i int) bool {
	p := x.Predicted
	if p == nil || p.Basis[i] == RTMRNotPinned {
		return false
	}
	if p.RTMR[i] == ([RTMRSize]byte{}) {
		return true
	}
	for _, e := range p.Events {
		if RTMRIndex(e.MRIndex) == i {
			return true
		}
	}
	return false
}

// WriteText prints the explanation, one event per line, then the RTMRs.
func (x *CCELExplanation) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, r := range x.Rows {
		idx := fmt.Sprintf("%3d", r.Index)
		if r.Index < 0 {
			idx = "  -"
		}
		reg := "MR" + fmt.Sprint(r.MRIndex)
		if i := RTMRIndex(r.MRIndex); i >= 0 {
			reg = fmt.Sprintf("RTMR%d", i)
		}
		if r.Type == EvNoAction {
			reg = "-"
		}
		d := "-"
		if r.Digest != nil {
			d = hex.EncodeToString(r.Digest)[:16] + "…"
		}
		fmt.Fprintf(&b, "%s %-5s %-33s %s %s", idx, reg, r.Type, d, r.What)
		if r.Status != "" {
			fmt.Fprintf(&b, "  [%s", r.Status)
			if r.Expected != nil {
				fmt.Fprintf(&b, ", predicted %x", r.Expected)
			}
			b.WriteString("]")
		}
		b.WriteString("\n")
	}
	for i := range NumRTMRs {
		fmt.Fprintf(&b, "RTMR%d replay %x", i, x.Replayed[i])
		if p := x.Predicted; p != nil && p.Boot {
			switch {
			case p.Basis[i] == RTMRNotPinned:
				b.WriteString("  (not pinned)")
			case !x.comparable(i):
				b.WriteString("  (predicted value comes from events outside the CC event log, e.g. the runner's workload log)")
			case p.RTMR[i] == x.Replayed[i]:
				fmt.Fprintf(&b, "  matches %s value", p.Basis[i])
			default:
				fmt.Fprintf(&b, "  DIFFERS from %s value %x", p.Basis[i], p.RTMR[i])
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// describeCCEvent says in words what an event measures, from its type and
// data (all reads bounds-checked; unparseable data is shown as a length).
func describeCCEvent(e Event) string {
	d := e.Data
	switch e.Type {
	case EvNoAction:
		if bytes.HasPrefix(d, SpecIDSignature[:15]) {
			return "Spec ID event"
		}
		return "no action: " + printable(d)
	case EvSeparator:
		return "separator"
	case EvEFIAction, EvPlatformConfigFlags, EvAction:
		return printable(d)
	case EvEventTag:
		if len(d) >= 8 {
			n := int(binary.LittleEndian.Uint32(d[4:]))
			if n <= len(d)-8 {
				return fmt.Sprintf("tagged 0x%08x %s", binary.LittleEndian.Uint32(d), printable(d[8:8+n]))
			}
		}
	case EvEFIPlatformFirmwareBlob2:
		if len(d) >= 1 && int(d[0]) <= len(d)-1 {
			return "firmware blob " + printable(d[1:1+int(d[0])])
		}
	case EvEFIHandoffTables2:
		if len(d) >= 1 && int(d[0]) <= len(d)-1 {
			return "handoff table " + printable(d[1:1+int(d[0])])
		}
	case EvEFIVariableDriverConfig, EvEFIVariableBoot, EvEFIVariableBoot2, EvEFIVariableAuthority:
		if name, ok := uefiVariableName(d); ok {
			return "variable " + name
		}
	case EvEFIBootServicesApp, EvEFIBootServicesDriver, EvEFIRuntimeServicesDriver:
		return "PE/COFF image (Authenticode)"
	}
	return fmt.Sprintf("%d bytes of event data", len(d))
}

// uefiVariableName decodes UEFI_VARIABLE_DATA's UnicodeName (TCG PFP
// 10.4.5.2: VariableName GUID, UnicodeNameLength, VariableDataLength,
// UnicodeName).
func uefiVariableName(d []byte) (string, bool) {
	if len(d) < 32 {
		return "", false
	}
	n := binary.LittleEndian.Uint64(d[16:])
	if n > uint64(len(d)-32)/2 {
		return "", false
	}
	u := make([]uint16, n)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(d[32+2*i:])
	}
	return string(utf16.Decode(u)), true
}

// printable renders event text, trimming NULs and escaping the rest.
func printable(b []byte) string {
	b = bytes.TrimRight(b, "\x00")
	s := string(b)
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return fmt.Sprintf("%q", s)
}
