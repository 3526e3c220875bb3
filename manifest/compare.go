package manifest

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
)

// ValueRow is one compared reference value: published (in the manifest)
// versus recomputed (from artifacts or a rebuild).
type ValueRow struct {
	Shape      string `json:"shape,omitempty"`
	Value      string `json:"value"`
	Published  string `json:"published"`
	Recomputed string `json:"recomputed"`
	Match      bool   `json:"match"`
	// Detail explains a mismatch, e.g. the first differing event.
	Detail string `json:"detail,omitempty"`
}

func row(shape, value, pub, re string) ValueRow {
	return ValueRow{Shape: shape, Value: value, Published: pub, Recomputed: re, Match: pub == re}
}

// CompareShape lists every reference value of a published shape next to
// its recomputation.
func CompareShape(pub, re *Shape) []ValueRow {
	n := pub.Name
	rows := []ValueRow{row(n, "parameters", shapeParams(pub), shapeParams(re))}
	if !rows[0].Match {
		rows[0].Detail = "published " + rows[0].Published + "; recipe " + rows[0].Recomputed
	}
	if pub.SNP != nil || re.SNP != nil {
		p, r := orSNP(pub.SNP), orSNP(re.SNP)
		rows = append(rows, row(n, "snp.launch_digest", p.LaunchDigest, r.LaunchDigest))
		if p.OVMFHash != "" || r.OVMFHash != "" {
			rows = append(rows, row(n, "snp.ovmf_hash", p.OVMFHash, r.OVMFHash))
		}
		rows = append(rows, row(n, "snp.covers_kernel", strconv.FormatBool(p.CoversKernel), strconv.FormatBool(r.CoversKernel)))
	}
	if pub.TDX != nil || re.TDX != nil {
		p, r := orTDX(pub.TDX), orTDX(re.TDX)
		rows = append(rows, row(n, "tdx.mrtd", p.MRTD, r.MRTD))
		for i := range 4 {
			rows = append(rows, row(n, fmt.Sprintf("tdx.rtmr[%d] (%s)", i, p.RTMRBasis[i]), p.RTMR[i], r.RTMR[i]))
		}
		rows = append(rows, eventRow(n, "tdx.event_log", p.EventLog, r.EventLog))
	}
	if pub.TPM != nil || re.TPM != nil {
		p, r := orTPM(pub.TPM), orTPM(re.TPM)
		banks := slices.Sorted(maps.Keys(union(p.PCRs, r.PCRs)))
		for _, b := range banks {
			idx := union(p.PCRs[b], r.PCRs[b])
			for _, i := range sortedIndices(idx) {
				rows = append(rows, row(n, fmt.Sprintf("tpm.pcr%s.%s (%s)", i, b, p.Basis[i]), p.PCRs[b][i], r.PCRs[b][i]))
			}
		}
		rows = append(rows, eventRow(n, "tpm.event_log", p.EventLog, r.EventLog))
		if len(p.WorkloadLog) > 0 || len(r.WorkloadLog) > 0 {
			rows = append(rows, eventRow(n, "tpm.workload_log", p.WorkloadLog, r.WorkloadLog))
		}
	}
	return rows
}

func shapeParams(s *Shape) string {
	return fmt.Sprintf("vcpus=%d vcpu_type=%s vcpu_sig=%s vmm=%s/%s machine=%s memory_mib=%d guest_features=%s policy=%s page_order=%s profile=%s",
		s.VCPUs, s.VCPUType, s.VCPUSig, s.VMM, s.VMMVersion, s.Machine, s.MemoryMiB, s.GuestFeatures, s.Policy, s.PageOrder, s.Profile)
}

func orSNP(v *SNPValues) *SNPValues {
	if v == nil {
		return &SNPValues{}
	}
	return v
}

func orTDX(v *TDXValues) *TDXValues {
	if v == nil {
		return &TDXValues{}
	}
	return v
}

func orTPM(v *TPMValues) *TPMValues {
	if v == nil {
		return &TPMValues{}
	}
	return v
}

func union[V any](a, b map[string]V) map[string]V {
	out := map[string]V{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if _, ok := out[k]; !ok {
			out[k] = v
		}
	}
	return out
}

func sortedIndices[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return keys
}

// eventRow compares two event logs and names the first differing event.
func eventRow(shape, value string, pub, re []Event) ValueRow {
	r := ValueRow{Shape: shape, Value: value, Published: fmt.Sprintf("%d events", len(pub)), Recomputed: fmt.Sprintf("%d events", len(re)), Match: true}
	for i := range max(len(pub), len(re)) {
		switch {
		case i >= len(pub):
			r.Match, r.Detail = false, "extra recomputed event: "+describeEvent(re[i])
		case i >= len(re):
			r.Match, r.Detail = false, "missing event: "+describeEvent(pub[i])
		case !eventEqual(pub[i], re[i]):
			r.Match, r.Detail = false, fmt.Sprintf("first difference at event %d: published %s, recomputed %s", pub[i].Index, describeEvent(pub[i]), describeEvent(re[i]))
		default:
			continue
		}
		return r
	}
	return r
}

func eventEqual(a, b Event) bool {
	return a.Index == b.Index && a.PCR == b.PCR && a.Type == b.Type && a.Data == b.Data && maps.Equal(a.Digests, b.Digests)
}

func describeEvent(e Event) string {
	d := ""
	for _, b := range slices.Sorted(maps.Keys(e.Digests)) {
		d = b + ":" + e.Digests[b]
		break
	}
	s := fmt.Sprintf("#%d PCR%d %s %s", e.Index, e.PCR, e.Type, d)
	if e.Description != "" {
		s += fmt.Sprintf(" (%s)", e.Description)
	}
	return s
}

// CompareArtifacts lists every published artifact next to a rebuilt one.
func CompareArtifacts(pub, re []Artifact) []ValueRow {
	byName := map[string]Artifact{}
	for _, a := range re {
		byName[a.Name] = a
	}
	var rows []ValueRow
	for _, a := range pub {
		b, ok := byName[a.Name]
		r := row("", "artifact "+a.Name, fmt.Sprintf("%s (%d bytes)", a.SHA256, a.Size), "")
		if ok {
			r.Recomputed = fmt.Sprintf("%s (%d bytes)", b.SHA256, b.Size)
			r.Match = a.SHA256 == b.SHA256 && a.Size == b.Size
		} else {
			r.Recomputed, r.Match, r.Detail = "-", false, "not produced by the rebuild"
		}
		delete(byName, a.Name)
		rows = append(rows, r)
	}
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		rows = append(rows, ValueRow{Value: "artifact " + n, Published: "-", Recomputed: byName[n].SHA256, Detail: "not in the published manifest"})
	}
	return rows
}

// WriteRows prints rows as a table: value, published, recomputed, match.
func WriteRows(w io.Writer, rows []ValueRow) {
	fmt.Fprintf(w, "%-12s %-34s %-20s %-20s %s\n", "SHAPE", "VALUE", "PUBLISHED", "RECOMPUTED", "MATCH")
	for _, r := range rows {
		m := "yes"
		if !r.Match {
			m = "NO"
		}
		fmt.Fprintf(w, "%-12s %-34s %-20s %-20s %s\n", orDash(r.Shape), r.Value, abbrev(r.Published), abbrev(r.Recomputed), m)
		if !r.Match && r.Detail != "" {
			fmt.Fprintf(w, "%-12s   %s\n", "", r.Detail)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func abbrev(s string) string {
	if len(s) > 20 {
		return s[:17] + "..."
	}
	return s
}
