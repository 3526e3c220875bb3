package builder

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

func init() { registerValues("tdx", tdxValues) }

// TDXRequest is everything `mkcvm measure tdx` and a TDX shape feed the TDX
// calculator. Byte fields are file contents; names label them in errors.
type TDXRequest struct {
	FirmwareName string
	Firmware     []byte // combined VARS+CODE flash image
	PageOrder    string // single | two-pass | "" (single)
	KernelName   string
	Kernel       []byte // nil: MRTD only
	Initrd       []byte // nil: no initrd
	Cmdline      string
	MemoryMiB    int
	VCPUs        int
	Machine      string
	ProfileName  string
	Profile      []byte // captured CC event log (CCEL data), optional
	// Workload is the container the runner starts (extends RTMR3), or nil.
	Workload *Workload
	// FirmwareMeasures and StubMeasures override detection ("" = detect,
	// "yes", "no").
	FirmwareMeasures, StubMeasures string
}

// TDXReport is the result: the manifest values plus the notes explaining
// them.
type TDXReport struct {
	Values manifest.TDXValues
	// PageOrder is the page order used (recorded in the shape).
	PageOrder string
	Notes     []string
}

// MeasureTDX computes MRTD and, when a kernel is given, the RTMRs with
// their predicted CC event log. It performs no I/O.
func MeasureTDX(req TDXRequest) (*TDXReport, error) {
	in := measure.TDXInputs{
		FirmwareName: req.FirmwareName, Firmware: req.Firmware, PageOrder: measure.TDXPageOrder(req.PageOrder),
		KernelName: req.KernelName, Kernel: req.Kernel, Initrd: req.Initrd, Cmdline: req.Cmdline,
		MemoryMiB: req.MemoryMiB, Machine: req.Machine, ProfileName: req.ProfileName,
	}
	var err error
	if in.FirmwareMeasures, err = yesNo("firmware measures", req.FirmwareMeasures); err != nil {
		return nil, err
	}
	if in.StubMeasures, err = yesNo("stub measures", req.StubMeasures); err != nil {
		return nil, err
	}
	if w := req.Workload; w != nil {
		in.Workload = &measure.WorkloadRef{Image: w.Image, ConfigDigest: w.Config, Args: w.Args, Env: w.Env}
	}
	if req.Kernel != nil && req.MemoryMiB <= 0 {
		return nil, errors.New("TDX RTMRs need the guest memory size (memory_mib / --memory)")
	}
	if req.Profile != nil {
		if in.Profile, err = measure.ParseCCEL(req.ProfileName, req.Profile); err != nil {
			return nil, fmt.Errorf("TDX profile: %w", err)
		}
	}
	res, err := measure.TDX(in)
	if err != nil {
		return nil, err
	}
	return &TDXReport{Values: tdxManifestValues(res), PageOrder: string(res.PageOrder), Notes: res.Notes}, nil
}

func yesNo(what, s string) (*bool, error) {
	switch s {
	case "", "auto":
		return nil, nil
	case "yes", "true":
		v := true
		return &v, nil
	case "no", "false":
		v := false
		return &v, nil
	}
	return nil, fmt.Errorf("%s: %q, want auto, yes or no", what, s)
}

// tdxManifestValues converts a measure result to manifest form.
func tdxManifestValues(r *measure.TDXResult) manifest.TDXValues {
	v := manifest.TDXValues{MRTD: hex.EncodeToString(r.MRTD[:])}
	for i := range measure.NumRTMRs {
		v.RTMRBasis[i] = string(r.Basis[i])
		if r.Basis[i] != measure.RTMRNotPinned {
			v.RTMR[i] = hex.EncodeToString(r.RTMR[i][:])
		}
	}
	for i, e := range r.Events {
		me := manifest.Event{Index: i + 1, PCR: int(e.MRIndex), Type: e.Type.String(),
			Digests: map[string]string{"sha384": hex.EncodeToString(e.Digest[:])}, Description: e.Description}
		if e.Data != nil {
			me.Data = hex.EncodeToString(e.Data)
		}
		v.EventLog = append(v.EventLog, me)
	}
	return v
}

// tdxValues is the "tdx" shape calculator.
func tdxValues(in *MeasureInputs, s Shape, out *manifest.Shape) error {
	if in.Firmware == nil {
		return errors.New("TDX needs the combined VARS+CODE flash image (firmware.image): TDX metadata offsets refer to the whole image")
	}
	if s.VMM != "" && s.VMM != "qemu" {
		return fmt.Errorf("vmm %q: only QEMU direct boot is modelled for TDX", s.VMM)
	}
	req := TDXRequest{FirmwareName: "firmware", Firmware: in.Firmware, PageOrder: tdxPageOrder(s),
		KernelName: "kernel", Kernel: in.Kernel, Initrd: in.Initrd, Cmdline: in.Cmdline,
		MemoryMiB: s.MemoryMiB, VCPUs: s.VCPUs, Machine: s.Machine, Workload: in.Workload}
	if s.Profile != "" {
		p, ok := in.Inputs[s.Profile]
		if !ok {
			return fmt.Errorf("profile input %q not found", s.Profile)
		}
		req.ProfileName, req.Profile = s.Profile, p
	}
	rep, err := MeasureTDX(req)
	if err != nil {
		return err
	}
	v := rep.Values
	out.TDX = &v
	out.PageOrder = rep.PageOrder
	out.Notes = append(out.Notes, rep.Notes...)
	return nil
}

// ExplainTDX prints, for a real CC event log (the bytes of
// /sys/firmware/acpi/tables/data/CCEL, named name in errors), each event
// with what it measures and, when want is not nil, whether it matches the
// manifest's predicted event log and RTMRs. It returns the number of
// mismatches (0 when want is nil). For `mkcvm explain`.
func ExplainTDX(w io.Writer, name string, ccel []byte, want *manifest.TDXValues) (int, error) {
	l, err := measure.ParseCCEL(name, ccel)
	if err != nil {
		return 0, err
	}
	var pred *measure.TDXResult
	if want != nil {
		if pred, err = tdxResultFromManifest(want); err != nil {
			return 0, err
		}
	}
	x, err := measure.ExplainCCEL(l, pred)
	if err != nil {
		return 0, err
	}
	if err := x.WriteText(w); err != nil {
		return 0, err
	}
	return x.Mismatches(), nil
}

// tdxResultFromManifest rebuilds the prediction ExplainCCEL compares with
// from manifest values.
func tdxResultFromManifest(v *manifest.TDXValues) (*measure.TDXResult, error) {
	r := &measure.TDXResult{Boot: true}
	for i := range measure.NumRTMRs {
		r.Basis[i] = measure.RTMRBasis(v.RTMRBasis[i])
		if r.Basis[i] == measure.RTMRNotPinned || v.RTMR[i] == "" {
			r.Basis[i] = measure.RTMRNotPinned
			continue
		}
		b, err := hex.DecodeString(v.RTMR[i])
		if err != nil || len(b) != measure.RTMRSize {
			return nil, fmt.Errorf("manifest tdx.rtmr[%d]: %q is not a SHA-384 hex digest", i, v.RTMR[i])
		}
		r.RTMR[i] = [measure.RTMRSize]byte(b)
	}
	for _, e := range v.EventLog {
		t, err := measure.ParseEventType(e.Type)
		if err != nil {
			return nil, fmt.Errorf("manifest tdx.event_log[%d]: %w", e.Index, err)
		}
		d, err := hex.DecodeString(e.Digests["sha384"])
		if err != nil || len(d) != measure.RTMRSize {
			return nil, fmt.Errorf("manifest tdx.event_log[%d]: sha384 digest %q", e.Index, e.Digests["sha384"])
		}
		r.Events = append(r.Events, measure.CCEvent{MRIndex: uint32(e.PCR), Type: t, Digest: [measure.RTMRSize]byte(d), Description: e.Description})
	}
	return r, nil
}

// tdxPageOrder is the shape's page_order, or when it has none the order
// its QEMU version uses: two-pass for QEMU 8.x (the pre-upstream TDX
// patches; dstack-mr's versioned default), single otherwise.
func tdxPageOrder(s Shape) string {
	if s.PageOrder != "" {
		return s.PageOrder
	}
	if (s.VMM == "" || s.VMM == "qemu") && strings.HasPrefix(s.VMMVersion, "8.") {
		return string(measure.PageOrderTwoPass)
	}
	return string(measure.PageOrderSingle)
}
