package measure

import (
	"fmt"
	"strings"
)

// VCPUSig computes the CPUID Fn0000_0001_EAX signature from a family, model
// and stepping (AMD CPUID Specification #25481 rev 2.34, "CPUID
// Fn0000_0001_EAX Family, Model, Stepping Identifiers"): families above 0xf
// are encoded as 0xf plus an extended family.
func VCPUSig(family, model, stepping int) uint32 {
	famLow, famHigh := family, 0
	if family > 0xf {
		famLow, famHigh = 0xf, (family-0xf)&0xff
	}
	return uint32(famHigh)<<20 | uint32((model>>4)&0xf)<<16 | uint32(famLow&0xf)<<8 |
		uint32(model&0xf)<<4 | uint32(stepping&0xf)
}

// VCPUType is a named QEMU CPU model (target/i386/cpu.c builtin_x86_defs)
// with its CPUID signature.
type VCPUType struct {
	Name                    string
	Family, Model, Stepping int
}

// Sig returns the CPUID signature of the model.
func (t VCPUType) Sig() uint32 { return VCPUSig(t.Family, t.Model, t.Stepping) }

// VCPUTypes lists the named models sev-snp-measure 0.0.13 accepts, in its
// order.
var VCPUTypes = []VCPUType{
	{"EPYC", 23, 1, 2}, {"EPYC-v1", 23, 1, 2}, {"EPYC-v2", 23, 1, 2}, {"EPYC-IBPB", 23, 1, 2},
	{"EPYC-v3", 23, 1, 2}, {"EPYC-v4", 23, 1, 2},
	{"EPYC-Rome", 23, 49, 0}, {"EPYC-Rome-v1", 23, 49, 0}, {"EPYC-Rome-v2", 23, 49, 0}, {"EPYC-Rome-v3", 23, 49, 0},
	{"EPYC-Milan", 25, 1, 1}, {"EPYC-Milan-v1", 25, 1, 1}, {"EPYC-Milan-v2", 25, 1, 1},
	{"EPYC-Genoa", 25, 17, 0}, {"EPYC-Genoa-v1", 25, 17, 0},
	{"EPYC-Turin", 26, 0, 0},
}

// LookupVCPUType finds a named model (exact name).
func LookupVCPUType(name string) (VCPUType, bool) {
	for _, t := range VCPUTypes {
		if t.Name == name {
			return t, true
		}
	}
	return VCPUType{}, false
}

// VCPUTypeNames returns the model names in VCPUTypes order.
func VCPUTypeNames() []string {
	var ns []string
	for _, t := range VCPUTypes {
		ns = append(ns, t.Name)
	}
	return ns
}

// VMMType is the hypervisor that launches the guest. The VMMs differ in the
// initial register state they put in the VMSA and in how they treat some
// SEV metadata sections.
type VMMType int

// VMM types, numbered as in sev-snp-measure.
const (
	VMMQEMU VMMType = 1
	VMMEC2  VMMType = 2 // Amazon EC2
	VMMGCE  VMMType = 3 // Google Compute Engine
)

// VMMTypes lists the VMM types.
var VMMTypes = []VMMType{VMMQEMU, VMMEC2, VMMGCE}

// String returns the name sev-snp-measure uses: QEMU, ec2 or gce.
func (v VMMType) String() string {
	switch v {
	case VMMQEMU:
		return "QEMU"
	case VMMEC2:
		return "ec2"
	case VMMGCE:
		return "gce"
	}
	return fmt.Sprintf("VMMType(%d)", int(v))
}

// ParseVMMType accepts QEMU, ec2 or gce, in any letter case.
func ParseVMMType(s string) (VMMType, error) {
	for _, v := range VMMTypes {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("unknown VMM type %q (want QEMU, ec2 or gce)", s)
}

func (v VMMType) valid() bool { return v >= VMMQEMU && v <= VMMGCE }
