package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/spf13/cobra"
)

func init() { addMeasureCommand(newMeasureSNPCmd) }

// snpFlags mirror sev-snp-measure 0.0.13's command line, plus --json,
// --matrix and --firmware-only.
type snpFlags struct {
	mode, vcpus, vcpuType, vmmType, ovmf, kernel, initrd, appendCmd string
	outputFormat, ovmfHash, svsm, varsFile, guestFeatures, vcpuSig  string
	vcpuFamily, vcpuModel, vcpuStepping, varsSize                   int
	verbose, dumpVMSA, json, matrix, firmwareOnly                   bool
	set                                                             func(string) bool
}

func newMeasureSNPCmd() *cobra.Command {
	var f snpFlags
	cmd := &cobra.Command{
		Use:   "snp --mode MODE --ovmf PATH [flags]",
		Short: "SEV, SEV-ES and SEV-SNP launch digests (sev-snp-measure compatible)",
		Long: `snp computes the launch digest of an AMD SEV, SEV-ES or SEV-SNP guest from
its OVMF image and, for a measured direct boot, kernel, initrd and command
line. It takes the flags of sev-snp-measure 0.0.13 with the same meaning and
defaults and prints the digest the same way. --json prints the digest with
every input that went in; --matrix takes comma lists (and ranges like 1-64)
in --vcpus, --vcpu-type, --vmm-type and --guest-features and prints one line
per shape. Firmware without SEV metadata is refused for seves/snp checks
that need it, and so is a kernel the firmware cannot measure, unless
--firmware-only says to measure the firmware alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.set = func(n string) bool { return cmd.Flags().Changed(n) }
			return runMeasureSNP(cmd.OutOrStdout(), cmd.ErrOrStderr(), &f)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.verbose, "verbose", "v", false, `print "Calculated <MODE> guest measurement: <digest>"`)
	fl.StringVar(&f.mode, "mode", "", "guest mode: sev, seves, snp, snp:ovmf-hash or snp:svsm (required)")
	fl.StringVar(&f.vcpus, "vcpus", "", "number of guest vCPUs (required except for sev)")
	fl.StringVar(&f.vcpuType, "vcpu-type", "", "type of guest vCPU ("+strings.Join(measure.VCPUTypeNames(), ", ")+")")
	fl.StringVar(&f.vcpuSig, "vcpu-sig", "", "guest vCPU signature value (decimal, 0x hex or 0o octal)")
	fl.IntVar(&f.vcpuFamily, "vcpu-family", 0, "guest vCPU family")
	fl.IntVar(&f.vcpuModel, "vcpu-model", 0, "guest vCPU model")
	fl.IntVar(&f.vcpuStepping, "vcpu-stepping", 0, "guest vCPU stepping")
	fl.StringVar(&f.vmmType, "vmm-type", "QEMU", "type of guest VMM (QEMU, ec2, gce)")
	fl.StringVar(&f.ovmf, "ovmf", "", "OVMF file to calculate the hash from (required)")
	fl.StringVar(&f.kernel, "kernel", "", "kernel file to calculate the hash from")
	fl.StringVar(&f.initrd, "initrd", "", "initrd file to calculate the hash from (use with --kernel)")
	fl.StringVar(&f.appendCmd, "append", "", "kernel command line to calculate the hash from (use with --kernel)")
	fl.StringVar(&f.guestFeatures, "guest-features", "0x1", "guest kernel features (SEV_FEATURES) expected, e.g. 0x1 or 0x21")
	fl.StringVar(&f.outputFormat, "output-format", "hex", "measurement output format: hex or base64")
	fl.StringVar(&f.ovmfHash, "snp-ovmf-hash", "", "precalculated hash of the OVMF binary (hex, from --mode snp:ovmf-hash)")
	fl.BoolVar(&f.dumpVMSA, "dump-vmsa", false, "write measured VMSAs to vmsa<N>.bin (seves, snp and snp:svsm modes only)")
	fl.StringVar(&f.svsm, "svsm", "", "SVSM binary (snp:svsm mode)")
	fl.IntVar(&f.varsSize, "vars-size", 0, "size of the OVMF_VARS file in bytes (snp:svsm mode)")
	fl.StringVar(&f.varsFile, "vars-file", "", "OVMF_VARS file (snp:svsm mode)")
	fl.BoolVar(&f.json, "json", false, "print the digest(s) and every input as JSON")
	fl.BoolVar(&f.matrix, "matrix", false, "take lists in --vcpus, --vcpu-type, --vmm-type, --guest-features; one digest per shape")
	fl.BoolVar(&f.firmwareOnly, "firmware-only", false, "measure the firmware alone even when --kernel is given (the digest then does not cover kernel, initrd or command line)")
	return cmd
}

// snpModeNames are sev-snp-measure's SevMode names used in -v output.
var snpModeNames = map[string]string{"sev": "SEV", "seves": "SEV_ES", "snp": "SEV_SNP", "snp:svsm": "SEV_SNP_SVSM"}

// usageError is an argument error (exit code 2, like argparse).
func usageError(format string, args ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, args...)}
}

func runMeasureSNP(stdout, stderr io.Writer, f *snpFlags) error {
	req, err := f.request()
	if err != nil {
		return err
	}
	if f.mode == "snp:ovmf-hash" {
		d, err := measure.SNPOVMFHash(req.OVMF)
		if err != nil {
			return &ExitError{Code: 1, Err: fmt.Errorf("%s: %w", f.ovmf, err)}
		}
		return printSNP(stdout, f, req, []snpResult{{Digest: d[:]}})
	}
	if req.Hashes != nil && f.firmwareOnly {
		fmt.Fprintln(stderr, "mkcvm: --firmware-only: the digest covers the firmware only, not the kernel, initrd or command line")
		req.Hashes = nil
	}
	res, err := computeSNP(req)
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	if f.dumpVMSA {
		if err := dumpVMSAs(req, res[0].Shape); err != nil {
			return err
		}
	}
	return printSNP(stdout, f, req, res)
}

// snpRequest is everything a digest depends on, resolved from the flags.
type snpRequest struct {
	Mode     string
	OVMFName string
	OVMF     []byte
	OVMFHash *measure.SNPDigest
	Hashes   *measure.SEVHashes
	SVSM     []byte
	VarsSize int
	Inputs   snpInputs
	Shapes   []snpShape
}

// snpInputs is the --json record of the input files.
type snpInputs struct {
	OVMF          snpFile  `json:"ovmf"`
	OVMFHash      string   `json:"snp_ovmf_hash,omitempty"`
	Kernel        *snpFile `json:"kernel,omitempty"`
	Initrd        *snpFile `json:"initrd,omitempty"`
	Append        *string  `json:"append,omitempty"`
	KernelSHA256  string   `json:"kernel_table_sha256,omitempty"`
	InitrdSHA256  string   `json:"initrd_table_sha256,omitempty"`
	CmdlineSHA256 string   `json:"cmdline_table_sha256,omitempty"`
	FirmwareOnly  bool     `json:"firmware_only,omitempty"`
	SVSM          *snpFile `json:"svsm,omitempty"`
	VarsSize      int      `json:"vars_size,omitempty"`
}

type snpFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int    `json:"size"`
}

type snpShape struct {
	VCPUs         int    `json:"vcpus,omitempty"`
	VCPUType      string `json:"vcpu_type,omitempty"`
	VCPUSig       string `json:"vcpu_sig,omitempty"`
	VMM           string `json:"vmm_type,omitempty"`
	GuestFeatures string `json:"guest_features,omitempty"`
	m             measure.SNPShape
}

type snpResult struct {
	Shape  snpShape `json:"shape"`
	Digest []byte   `json:"-"`
	Hex    string   `json:"digest"`
}

func readSNPFile(path string) (snpFile, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return snpFile{}, nil, &ExitError{Code: 1, Err: err}
	}
	sum := sha256.Sum256(b)
	return snpFile{Path: path, SHA256: hex.EncodeToString(sum[:]), Size: len(b)}, b, nil
}

// request checks the flags like sev-snp-measure does and reads the files.
func (f *snpFlags) request() (*snpRequest, error) {
	if _, ok := snpModeNames[f.mode]; !ok && f.mode != "snp:ovmf-hash" {
		return nil, usageError("argument --mode: invalid choice: %q (choose from sev, seves, snp, snp:ovmf-hash, snp:svsm)", f.mode)
	}
	if f.ovmf == "" {
		return nil, usageError("the following arguments are required: --ovmf")
	}
	if f.outputFormat != "hex" && f.outputFormat != "base64" {
		return nil, usageError("argument --output-format: invalid choice: %q (choose from hex, base64)", f.outputFormat)
	}
	r := &snpRequest{Mode: f.mode, OVMFName: f.ovmf}
	var err error
	if r.Inputs.OVMF, r.OVMF, err = readSNPFile(f.ovmf); err != nil {
		return nil, err
	}
	if f.mode == "snp:ovmf-hash" {
		return r, nil
	}
	if err := f.checkArgs(); err != nil {
		return nil, err
	}
	if err := f.readKernel(r); err != nil {
		return nil, err
	}
	if f.mode == "snp:svsm" {
		if err := f.readSVSM(r); err != nil {
			return nil, err
		}
	}
	if f.ovmfHash != "" {
		b, err := hex.DecodeString(f.ovmfHash)
		if err != nil || len(b) != measure.SizeofSNPDigest {
			return nil, usageError("--snp-ovmf-hash %q: want %d hex bytes", f.ovmfHash, measure.SizeofSNPDigest)
		}
		r.OVMFHash, r.Inputs.OVMFHash = (*measure.SNPDigest)(b), f.ovmfHash
	}
	r.Inputs.FirmwareOnly = f.firmwareOnly && r.Hashes != nil
	r.Shapes, err = f.shapes()
	return r, err
}

func (f *snpFlags) checkArgs() error {
	switch {
	case f.initrd != "" && f.kernel == "":
		return usageError("--kernel required when using --initrd")
	case f.appendCmd != "" && f.kernel == "":
		return usageError("--kernel required when using --append")
	case f.mode != "sev" && f.vcpus == "":
		return usageError("missing --vcpus N in guest mode '%s'", f.mode)
	case f.ovmfHash != "" && f.mode != "snp":
		return usageError("SNP OVMF hash only works with SNP")
	case f.dumpVMSA && f.matrix:
		return usageError("--dump-vmsa takes one shape, not --matrix")
	case f.dumpVMSA && f.mode != "seves" && f.mode != "snp" && f.mode != "snp:svsm":
		return usageError("--dump-vmsa is not available in the selected mode")
	case f.varsFile != "" && f.varsSize != 0:
		return usageError("argument --vars-file: not allowed with argument --vars-size")
	case f.mode == "snp:svsm" && f.varsFile == "" && f.varsSize == 0:
		return usageError("snp:svsm mode requires --vars-size or --vars-file")
	case f.mode == "snp:svsm" && f.svsm == "":
		return usageError("snp:svsm mode requires --svsm")
	case f.mode == "snp:svsm" && f.kernel != "":
		return usageError("snp:svsm mode takes no --kernel")
	}
	return nil
}

// SVSMName is the SVSM path for error messages.
func (r *snpRequest) SVSMName() string { return r.Inputs.SVSM.Path }

// readSVSM reads the SVSM image and the variable store size.
func (f *snpFlags) readSVSM(r *snpRequest) error {
	sf, b, err := readSNPFile(f.svsm)
	if err != nil {
		return err
	}
	r.SVSM, r.Inputs.SVSM, r.VarsSize = b, &sf, f.varsSize
	if f.varsFile != "" {
		st, err := os.Stat(f.varsFile)
		if err != nil {
			return &ExitError{Code: 1, Err: err}
		}
		r.VarsSize = int(st.Size())
	}
	r.Inputs.VarsSize = r.VarsSize
	return nil
}

func (f *snpFlags) readKernel(r *snpRequest) error {
	if f.kernel == "" {
		return nil
	}
	kf, kernel, err := readSNPFile(f.kernel)
	if err != nil {
		return err
	}
	r.Inputs.Kernel = &kf
	var initrd []byte
	if f.initrd != "" {
		var inf snpFile
		if inf, initrd, err = readSNPFile(f.initrd); err != nil {
			return err
		}
		r.Inputs.Initrd = &inf
	}
	if f.set("append") {
		r.Inputs.Append = &f.appendCmd
	}
	h := measure.NewSEVHashes(kernel, initrd, f.appendCmd)
	r.Hashes = &h
	r.Inputs.KernelSHA256, r.Inputs.InitrdSHA256 = hex.EncodeToString(h.Kernel[:]), hex.EncodeToString(h.Initrd[:])
	r.Inputs.CmdlineSHA256 = hex.EncodeToString(h.Cmdline[:])
	return nil
}

// list splits a --matrix list; without --matrix it is the value itself.
func (f *snpFlags) list(v string) []string {
	if !f.matrix {
		return []string{v}
	}
	return strings.Split(v, ",")
}

// shapes expands the shape flags (lists and ranges under --matrix).
func (f *snpFlags) shapes() ([]snpShape, error) {
	if f.mode == "sev" {
		return []snpShape{{}}, nil
	}
	vcpus, err := f.vcpuCounts()
	if err != nil {
		return nil, err
	}
	var out []snpShape
	for _, vmmName := range f.list(f.vmmType) {
		vmm, err := measure.ParseVMMType(vmmName)
		if err != nil {
			return nil, usageError("unknown VMM type '%s'", vmmName)
		}
		if f.mode == "snp:svsm" && vmm != measure.VMMQEMU {
			return nil, &ExitError{Code: 1, Err: errors.New("SVSM mode is only implemented for QEMU")}
		}
		for _, typ := range f.list(f.vcpuType) {
			sig, sigText, err := f.signature(typ, vmm)
			if err != nil {
				return nil, err
			}
			for _, gfText := range f.list(f.guestFeatures) {
				gf, err := strconv.ParseUint(gfText, 0, 64)
				if err != nil {
					return nil, usageError("argument --guest-features: invalid value: %q", gfText)
				}
				for _, n := range vcpus {
					s := snpShape{VCPUs: n, VCPUType: typ, VCPUSig: sigText, VMM: vmm.String(),
						m: measure.SNPShape{VCPUs: n, VCPUSig: sig, VMM: vmm, GuestFeatures: gf}}
					switch f.mode {
					case "snp":
						s.GuestFeatures = fmt.Sprintf("0x%x", gf)
					case "snp:svsm": // the SVSM VMSA always has SEV_FEATURES 0x1
						s.GuestFeatures, s.m.GuestFeatures = "0x1", 1
					default:
						s.m.GuestFeatures = 0
					}
					out = append(out, s)
				}
			}
		}
	}
	return out, nil
}

// vcpuCounts parses --vcpus: one integer, or under --matrix a list of
// integers and ranges (1-64).
func (f *snpFlags) vcpuCounts() ([]int, error) {
	var out []int
	for _, item := range f.list(f.vcpus) {
		lo, hi, isRange := strings.Cut(item, "-")
		if !f.matrix || lo == "" {
			lo, hi, isRange = item, "", false
		}
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err != nil || b < a {
			return nil, usageError("argument --vcpus: invalid int value: %q", item)
		}
		for n := a; n <= b; n++ {
			out = append(out, n)
		}
	}
	return out, nil
}

// signature resolves the vCPU signature in sev-snp-measure 0.0.13's order:
// family/model/stepping, then --vcpu-sig, then --vcpu-type. Like 0.0.13 it
// treats a zero family or signature as not given.
func (f *snpFlags) signature(typ string, vmm measure.VMMType) (uint32, string, error) {
	if typ != "" {
		if _, ok := measure.LookupVCPUType(typ); !ok {
			return 0, "", usageError("argument --vcpu-type: invalid choice: %q (choose from %s)", typ, strings.Join(measure.VCPUTypeNames(), ", "))
		}
	}
	var sig uint64
	if f.vcpuSig != "" {
		var err error
		if sig, err = strconv.ParseUint(f.vcpuSig, 0, 32); err != nil {
			return 0, "", usageError("argument --vcpu-sig: invalid auto_base_int value: %q", f.vcpuSig)
		}
	}
	switch {
	case f.vcpuFamily != 0:
		if !f.set("vcpu-model") || !f.set("vcpu-stepping") {
			return 0, "", usageError("--vcpu-family needs --vcpu-model and --vcpu-stepping")
		}
		s := measure.VCPUSig(f.vcpuFamily, f.vcpuModel, f.vcpuStepping)
		return s, fmt.Sprintf("0x%x", s), nil
	case sig != 0:
		return uint32(sig), fmt.Sprintf("0x%x", sig), nil
	case typ != "":
		vt, _ := measure.LookupVCPUType(typ)
		return vt.Sig(), fmt.Sprintf("0x%x", vt.Sig()), nil
	case vmm == measure.VMMQEMU:
		return 0, "", usageError("missing --vcpu-type or --vcpu-sig or --vcpu-family in guest mode '%s'", f.mode)
	}
	return 0, "", nil // EC2 and GCE put a fixed value in RDX
}

// computeSNP computes the digest of every shape, hashing inputs once.
func computeSNP(r *snpRequest) ([]snpResult, error) {
	res := make([]snpResult, len(r.Shapes))
	for i, s := range r.Shapes {
		res[i].Shape = s
	}
	if r.Mode == "snp:svsm" {
		for i, s := range r.Shapes {
			d, err := measure.SNPSVSMLaunchDigest(measure.SVSMInputs{OVMFName: r.OVMFName, OVMF: r.OVMF, SVSMName: r.Inputs.SVSM.Path,
				SVSM: r.SVSM, VarsSize: r.VarsSize, VCPUs: s.m.VCPUs, VCPUSig: s.m.VCPUSig})
			if err != nil {
				return nil, err
			}
			res[i].Digest = d[:]
		}
		return res, nil
	}
	if r.Mode == "snp" {
		fw, err := measure.NewSNPFirmware(r.OVMFName, r.OVMF, r.OVMFHash)
		if err != nil {
			return nil, err
		}
		l, err := measure.NewSNPLaunch(fw, r.Hashes)
		if err != nil {
			return nil, fmt.Errorf("%w (--firmware-only)", err)
		}
		ms := make([]measure.SNPShape, len(r.Shapes))
		for i, s := range r.Shapes {
			ms[i] = s.m
		}
		ds, err := l.Digests(ms)
		if err != nil {
			return nil, err
		}
		for i := range ds {
			res[i].Digest = ds[i][:]
		}
		return res, nil
	}
	l, err := measure.NewSEVLaunch(r.OVMFName, r.OVMF, r.Hashes)
	if err != nil {
		return nil, err
	}
	for i, s := range r.Shapes {
		d := l.SEVDigest()
		if r.Mode == "seves" {
			if d, err = l.SEVESDigest(s.m.VCPUs, s.m.VCPUSig, s.m.VMM); err != nil {
				return nil, err
			}
		}
		res[i].Digest = d[:]
	}
	return res, nil
}

func (f *snpFlags) format(d []byte) string {
	if f.outputFormat == "base64" && f.mode != "snp:ovmf-hash" {
		return base64.StdEncoding.EncodeToString(d)
	}
	return hex.EncodeToString(d)
}

// printSNP prints like sev-snp-measure (one line), one line per shape
// under --matrix, or the JSON record.
func printSNP(w io.Writer, f *snpFlags, r *snpRequest, res []snpResult) error {
	if f.json {
		for i := range res {
			res[i].Hex = hex.EncodeToString(res[i].Digest)
		}
		out := struct {
			Tool    string      `json:"tool"`
			Mode    string      `json:"mode"`
			Digest  string      `json:"digest,omitempty"`
			Inputs  snpInputs   `json:"inputs"`
			Results []snpResult `json:"results,omitempty"`
			Notes   []string    `json:"notes,omitempty"`
		}{Tool: "mkcvm measure snp (sev-snp-measure 0.0.13 compatible)", Mode: f.mode, Inputs: r.Inputs, Results: res}
		if len(res) == 1 {
			out.Digest = res[0].Hex
		}
		if r.Inputs.FirmwareOnly {
			out.Notes = append(out.Notes, "--firmware-only: the digest covers the firmware only, not the kernel, initrd or command line")
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, x := range res {
		line := f.format(x.Digest)
		if f.verbose && f.mode != "snp:ovmf-hash" {
			line = fmt.Sprintf("Calculated %s guest measurement: %s", snpModeNames[f.mode], line)
		}
		if f.matrix {
			s := x.Shape
			line = fmt.Sprintf("%s vcpus=%d vcpu-type=%s vcpu-sig=%s vmm-type=%s guest-features=%s", line, s.VCPUs, s.VCPUType, s.VCPUSig, s.VMM, s.GuestFeatures)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// dumpVMSAs writes the measured VMSA pages to vmsa<N>.bin, like
// sev-snp-measure --dump-vmsa.
func dumpVMSAs(r *snpRequest, s snpShape) error {
	var pages [][]byte
	if r.Mode == "snp:svsm" {
		var err error
		if pages, err = measure.SVSMVMSAPages(r.SVSMName(), r.SVSM, r.OVMF, r.VarsSize, s.m.VCPUs, s.m.VCPUSig); err != nil {
			return err
		}
	} else {
		l, err := measure.NewSEVLaunch(r.OVMFName, r.OVMF, nil)
		if err != nil {
			return err
		}
		if pages, err = l.VMSAPages(s.m.VCPUs, s.m.GuestFeatures, s.m.VCPUSig, s.m.VMM); err != nil {
			return err
		}
	}
	for i, p := range pages {
		if err := os.WriteFile(fmt.Sprintf("vmsa%d.bin", i), p, 0o644); err != nil {
			return err
		}
	}
	return nil
}
