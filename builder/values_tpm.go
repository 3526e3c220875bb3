package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

func init() { registerValues("tpm", tpmValues) }

// TPMRequest are the inputs of a vTPM PCR prediction for a QEMU + OVMF
// direct kernel boot.
type TPMRequest struct {
	Code    []byte // OVMF CODE pflash image
	Vars    []byte // OVMF VARS template
	Kernel  []byte
	Initrd  []byte // nil: no -initrd
	Cmdline string
	Machine string // default "q35"
	// MemoryMiB and VCPUs default to 1024 and 1.
	MemoryMiB, VCPUs int
	ProfileName      string
	Profile          []byte // captured platform profile (JSON), optional
	// Banks of the predicted log; nil: the profile's, or sha1, sha256,
	// sha384 and sha512 (swtpm's default PCR banks).
	Banks []measure.HashAlg
}

// ovmfCache keeps AnalyzeOVMF results (it decompresses ~13 MiB of LZMA) per
// CODE digest, so a build with several TPM shapes analyzes the firmware once.
var ovmfCache sync.Map // [32]byte -> *measure.OVMFFirmware

func analyzeOVMF(code []byte) (*measure.OVMFFirmware, error) {
	sum := sha256.Sum256(code)
	if fw, ok := ovmfCache.Load(sum); ok {
		return fw.(*measure.OVMFFirmware), nil
	}
	fw, err := measure.AnalyzeOVMF("OVMF CODE", code)
	if err != nil {
		return nil, err
	}
	ovmfCache.Store(sum, fw)
	return fw, nil
}

// PredictTPM predicts the event log and PCRs of a direct boot.
func PredictTPM(req TPMRequest) (*measure.Prediction, error) {
	if req.Code == nil || req.Vars == nil || req.Kernel == nil {
		return nil, errors.New("TPM prediction needs the OVMF CODE image, the VARS template and a kernel")
	}
	if req.Machine == "" {
		req.Machine = "q35"
	}
	if req.MemoryMiB == 0 {
		req.MemoryMiB = 1024
	}
	if req.VCPUs == 0 {
		req.VCPUs = 1
	}
	fw, err := analyzeOVMF(req.Code)
	if err != nil {
		return nil, err
	}
	in := &measure.DirectBoot{Firmware: fw, Vars: req.Vars, Kernel: req.Kernel, Initrd: req.Initrd,
		Cmdline: req.Cmdline, Machine: req.Machine, MemoryMiB: req.MemoryMiB, VCPUs: req.VCPUs, Algs: req.Banks}
	if req.Profile != nil {
		if in.Profile, err = measure.ParseProfile(req.ProfileName, req.Profile); err != nil {
			return nil, err
		}
	}
	return measure.PredictDirectBoot(in)
}

// ManifestBanks are the banks whose PCRs the manifest records.
var ManifestBanks = []measure.HashAlg{measure.AlgSHA256, measure.AlgSHA384}

// TPMValues converts a prediction to its manifest form: pinned PCRs of the
// sha256 and sha384 banks, basis and reason per PCR, and the predicted event
// log (every bank of the prediction; events that need a profile are left
// out and their PCR is not pinned).
func TPMValues(p *measure.Prediction) *manifest.TPMValues {
	v := &manifest.TPMValues{PCRs: map[string]map[string]string{}, Basis: map[string]string{}, Why: map[string]string{}}
	for _, a := range ManifestBanks {
		vals, ok := p.PCRs[a]
		if !ok {
			continue
		}
		m := map[string]string{}
		for _, pcr := range p.PinnedPCRs() {
			m[strconv.Itoa(int(pcr))] = hex.EncodeToString(vals[pcr])
		}
		v.PCRs[a.String()] = m
	}
	for pcr, b := range p.Basis {
		v.Basis[strconv.Itoa(int(pcr))] = b
		v.Why[strconv.Itoa(int(pcr))] = p.Why[pcr]
	}
	v.EventLog = ManifestEvents(p)
	return v
}

// ManifestEvents returns the predicted events in readable form; Index
// follows the event log's numbering (Spec ID event = 0). An event that
// needs a captured profile is listed without digests.
func ManifestEvents(p *measure.Prediction) []manifest.Event {
	var out []manifest.Event
	for _, e := range p.Events {
		me := manifest.Event{Index: len(out) + 1, PCR: int(e.PCR), Type: e.Type.String(),
			Digests: map[string]string{}, Description: e.Description, Data: hex.EncodeToString(e.Data)}
		if e.Source == measure.SourceUnknown {
			// Expected but not predictable without a profile: recorded
			// without digests, so explain shows it as unchecked.
			me.Description += " [not pinned: depends on " + strings.Join(e.DependsOn, ", ") + "]"
		}
		for _, d := range e.Digests {
			me.Digests[d.Alg.String()] = hex.EncodeToString(d.Value)
		}
		out = append(out, me)
	}
	return out
}

// PredictionFromManifest rebuilds a prediction from a manifest's TPM
// values, for explaining a real log against a published manifest. Events
// carry their description; the inputs they depend on are not recorded.
func PredictionFromManifest(v *manifest.TPMValues) (*measure.Prediction, error) {
	p := &measure.Prediction{PCRs: map[measure.HashAlg]map[uint32][]byte{}, Basis: map[uint32]string{}, Why: map[uint32]string{}}
	for i, me := range v.EventLog {
		typ, err := measure.ParseEventType(me.Type)
		if err != nil {
			return nil, fmt.Errorf("manifest event %d: %w", i+1, err)
		}
		data, err := hex.DecodeString(me.Data)
		if err != nil {
			return nil, fmt.Errorf("manifest event %d data: %w", i+1, err)
		}
		e := measure.PredictedEvent{Event: measure.Event{PCR: uint32(me.PCR), Type: typ, Data: data},
			Source: measure.SourceInputs, Description: me.Description, DependsOn: []string{"the inputs recorded in the manifest"}}
		algs, err := sortedBanks(me.Digests)
		if err != nil {
			return nil, fmt.Errorf("manifest event %d: %w", i+1, err)
		}
		for _, a := range algs {
			d, err := hex.DecodeString(me.Digests[a.String()])
			if err != nil {
				return nil, fmt.Errorf("manifest event %d %s digest: %w", i+1, a, err)
			}
			e.Digests = append(e.Digests, measure.Digest{Alg: a, Value: d})
		}
		if len(algs) == 0 {
			e.Source = measure.SourceUnknown
		} else if p.Algs == nil {
			p.Algs = algs
		}
		p.Events = append(p.Events, e)
	}
	for bank, vals := range v.PCRs {
		a, err := measure.ParseHashAlg(bank)
		if err != nil {
			return nil, err
		}
		p.PCRs[a] = map[uint32][]byte{}
		for k, hx := range vals {
			n, err := strconv.Atoi(k)
			if err != nil {
				return nil, fmt.Errorf("manifest pcrs.%s: index %q", bank, k)
			}
			b, err := hex.DecodeString(hx)
			if err != nil {
				return nil, fmt.Errorf("manifest pcrs.%s.%s: %w", bank, k, err)
			}
			p.PCRs[a][uint32(n)] = b
		}
	}
	for k, b := range v.Basis {
		n, err := strconv.Atoi(k)
		if err != nil {
			return nil, fmt.Errorf("manifest basis: index %q", k)
		}
		p.Basis[uint32(n)], p.Why[uint32(n)] = b, v.Why[k]
	}
	// Only banks with PCR values are compared PCR by PCR.
	var algs []measure.HashAlg
	for _, a := range p.Algs {
		if _, ok := p.PCRs[a]; ok {
			algs = append(algs, a)
		}
	}
	p.Algs = algs
	return p, nil
}

func sortedBanks(m map[string]string) ([]measure.HashAlg, error) {
	var out []measure.HashAlg
	for _, a := range []measure.HashAlg{measure.AlgSHA1, measure.AlgSHA256, measure.AlgSHA384, measure.AlgSHA512} {
		if _, ok := m[a.String()]; ok {
			out = append(out, a)
		}
	}
	if len(out) != len(m) {
		return nil, fmt.Errorf("unknown digest bank in %v", m)
	}
	return out, nil
}

// tpmValues is the "tpm" shape calculator.
func tpmValues(in *MeasureInputs, s Shape, out *manifest.Shape) error {
	if s.VMM != "" && s.VMM != "qemu" {
		return fmt.Errorf("vmm %q: vTPM values are modelled for QEMU direct boot only", s.VMM)
	}
	if s.VMMVersion != "" && s.VMMVersion != "7.2" {
		out.Notes = append(out.Notes, fmt.Sprintf("vTPM values are modelled and proven on QEMU 7.2; this shape names QEMU %s, whose kernel setup-header edits may differ", s.VMMVersion))
	}
	req := TPMRequest{Code: in.FirmwareCode, Vars: in.FirmwareVars, Kernel: in.Kernel, Initrd: in.Initrd,
		Cmdline: in.Cmdline, Machine: s.Machine, MemoryMiB: s.MemoryMiB, VCPUs: s.VCPUs}
	if s.Profile != "" {
		b, ok := in.Inputs[s.Profile]
		if !ok {
			return fmt.Errorf("profile input %q not found", s.Profile)
		}
		req.ProfileName, req.Profile = s.Profile, b
	}
	p, err := PredictTPM(req)
	if err != nil {
		return err
	}
	out.TPM = TPMValues(p)
	if in.Workload != nil {
		if err := addWorkloadPCR(out.TPM, in.Workload); err != nil {
			return err
		}
		out.Notes = append(out.Notes, fmt.Sprintf("PCR %d holds the runner's workload events (workload_log; the runner serves them as a CEL-style log, they are not in the firmware event log)", measure.WorkloadPCR))
	}
	if len(p.NotPinnedPCRs()) > 0 {
		out.Notes = append(out.Notes, fmt.Sprintf("PCRs %v not pinned: %s", p.NotPinnedPCRs(), p.Why[p.NotPinnedPCRs()[0]]))
	}
	out.Notes = append(out.Notes, "vTPM values assume QEMU 7.2 direct boot (-kernel/-initrd/-append) with -net none and no boot disks")
	return nil
}

// addWorkloadPCR pins measure.WorkloadPCR in every bank v records, from the
// runner's workload events for w (measure.PredictWorkload, the encoder the
// runner extends with), and lists those events in v.WorkloadLog. The events
// go to a separate field because the firmware event log holds TCG PC Client
// events only, while the runner serves its own CEL-style TLV log.
func addWorkloadPCR(v *manifest.TPMValues, w *Workload) error {
	ref := measure.WorkloadRef{Image: w.Image, ConfigDigest: w.Config, Args: w.Args, Env: w.Env}
	events, vals, err := measure.PredictWorkload(ref)
	if err != nil {
		return fmt.Errorf("workload PCR %d: %w", measure.WorkloadPCR, err)
	}
	key := strconv.Itoa(measure.WorkloadPCR)
	var banks []measure.HashAlg
	for _, a := range []measure.HashAlg{measure.AlgSHA1, measure.AlgSHA256, measure.AlgSHA384, measure.AlgSHA512} {
		if _, ok := v.PCRs[a.String()]; ok {
			banks = append(banks, a)
		}
	}
	for _, a := range banks {
		v.PCRs[a.String()][key] = hex.EncodeToString(workloadBank(vals, a))
	}
	v.Basis[key] = string(measure.BasisPredicted)
	v.Why[key] = fmt.Sprintf("the runner's %d workload events (docs/runner.md) for workload %s, config %s, args %q, env %q, extended from zero",
		len(events), w.Image, w.Config, w.Args, w.Env)
	for i, e := range events {
		data, _ := e.MarshalBinary()
		me := manifest.Event{Index: i, PCR: measure.WorkloadPCR, Type: e.Type.String(), Digests: map[string]string{},
			Description: e.String(), Data: hex.EncodeToString(data)}
		for _, a := range banks {
			me.Digests[a.String()] = hex.EncodeToString(a.Sum(data))
		}
		v.WorkloadLog = append(v.WorkloadLog, me)
	}
	return nil
}

// workloadBank returns the workload PCR value of bank a.
func workloadBank(v measure.WorkloadValues, a measure.HashAlg) []byte {
	switch a {
	case measure.AlgSHA1:
		return v.PCRSHA1[:]
	case measure.AlgSHA256:
		return v.PCRSHA256[:]
	case measure.AlgSHA384:
		return v.PCRSHA384[:]
	}
	return v.PCRSHA512[:]
}
