package measure

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// Text renders the explanation for people: one line per event (number in
// the real log, PCR, type, verdict, digest in bank alg, what it measures),
// indented details for every event that is not a match, then one line per
// PCR and a summary.
func (x *Explanation) Text(alg HashAlg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s %-4s %-34s %-10s %-16s %s\n", "#", "PCR", "TYPE", "VERDICT", alg.String(), "MEASURES")
	for _, v := range x.Events {
		e := v.Actual
		if e == nil {
			e = &v.Predicted.Event
		}
		idx := "-"
		if v.Index > 0 {
			idx = fmt.Sprint(v.Index)
		}
		desc := DescribeEvent(e)
		if v.Predicted != nil && v.Predicted.Description != "" {
			desc = v.Predicted.Description
		}
		fmt.Fprintf(&b, "%-4s %-4d %-34s %-10s %-16s %s\n", idx, e.PCR, e.Type, v.Verdict, short(e.Digest(alg)), desc)
		switch v.Verdict {
		case VerdictDiffer:
			fmt.Fprintf(&b, "       log:       %s  %s\n", hex.EncodeToString(v.Actual.Digest(alg)), DescribeEvent(v.Actual))
			fmt.Fprintf(&b, "       predicted: %s  %s\n", hex.EncodeToString(v.Predicted.Digest(alg)), DescribeEvent(&v.Predicted.Event))
			fmt.Fprintf(&b, "       why: %s\n", v.Hint)
		case VerdictMissing, VerdictUnexpected, VerdictUnchecked:
			fmt.Fprintf(&b, "       why: %s\n", v.Hint)
		}
	}
	b.WriteString("\n")
	for _, p := range x.PCRs {
		if p.Alg != alg {
			continue
		}
		fmt.Fprintf(&b, "PCR%-2d %s %-10s predicted=%s log=%s tpm=%s", p.PCR, p.Alg, p.Verdict, short(p.Predicted), short(p.Replayed), short(p.Quoted))
		if p.Reason != "" {
			fmt.Fprintf(&b, "  (%s)", p.Reason)
		}
		b.WriteString("\n")
	}
	for _, p := range x.PCRs {
		if p.Alg != alg && p.Verdict == VerdictDiffer {
			fmt.Fprintf(&b, "PCR%-2d %s %s: %s\n", p.PCR, p.Alg, p.Verdict, p.Reason)
		}
	}
	if x.AllMatch() {
		b.WriteString("all events and PCRs match\n")
	} else {
		n := 0
		for _, e := range x.Events {
			if e.Verdict != VerdictMatch && e.Verdict != VerdictUnchecked {
				n++
			}
		}
		for _, p := range x.PCRs {
			if p.Verdict == VerdictDiffer {
				n++
			}
		}
		fmt.Fprintf(&b, "%d differences\n", n)
	}
	return b.String()
}

func short(b []byte) string {
	if b == nil {
		return "-"
	}
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		return s[:16]
	}
	return s
}
