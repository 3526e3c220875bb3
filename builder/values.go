package builder

import (
	"fmt"
	"slices"

	"github.com/mkcvm/mkcvm/manifest"
)

// MeasureInputs are the resolved bytes a shape's reference values are
// computed from. All fields are already verified against their pins.
type MeasureInputs struct {
	Firmware     []byte // combined VARS+CODE flash image (e.g. OVMF.fd), if the recipe names one
	FirmwareCode []byte // CODE-only pflash image, if named
	FirmwareVars []byte // VARS template, if named
	Kernel       []byte
	Initrd       []byte // exactly the initrd artifact bytes (compressed as shipped)
	Cmdline      string
	// Inputs gives access to any other recipe input by name (e.g. a shape's
	// captured platform profile).
	Inputs map[string][]byte
	// Workload is the recipe's workload reference, if any.
	Workload *Workload
	// Disk is the disk image built for the recipe's [disk] section (set by
	// the disk artifact hook, builder/disk_build.go), or nil.
	Disk *DiskArtifacts
}

// ValueFunc computes the reference values of one shape and stores them in
// out (out.SNP, out.TDX or out.TPM, plus out.Notes). It must be pure: no
// I/O, no clock.
type ValueFunc func(in *MeasureInputs, shape Shape, out *manifest.Shape) error

// valueFuncs maps a shape platform to its calculator. Platform files
// (values_snp.go, values_tdx.go, values_tpm.go) register from init.
var valueFuncs = map[string]ValueFunc{}

func registerValues(platform string, f ValueFunc) { valueFuncs[platform] = f }

// Platforms lists the shape platforms with a registered calculator.
func Platforms() []string {
	var ps []string
	for p := range valueFuncs {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// ComputeShape fills the manifest entry of one shape: its parameters and
// its reference values.
func ComputeShape(in *MeasureInputs, s Shape) (manifest.Shape, error) {
	out := manifest.Shape{
		Name: s.Name, Platform: s.Platform, VCPUs: s.VCPUs, VCPUType: s.VCPUType,
		VCPUSig: s.VCPUSig, VMM: s.VMM, VMMVersion: s.VMMVersion, Machine: s.Machine,
		MemoryMiB: s.MemoryMiB, GuestFeatures: s.GuestFeatures, Policy: s.Policy,
		PageOrder: s.PageOrder, Profile: s.Profile,
	}
	f, ok := valueFuncs[s.Platform]
	if !ok {
		out.Notes = append(out.Notes, fmt.Sprintf("no reference values: platform %q has no calculator in this build", s.Platform))
		return out, nil
	}
	if err := f(in, s, &out); err != nil {
		return out, fmt.Errorf("shape %q (%s): %w", s.Name, s.Platform, err)
	}
	return out, nil
}
