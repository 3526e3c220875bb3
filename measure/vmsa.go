package measure

import (
	"encoding/binary"
	"fmt"
)

// VMSA (SEV-ES save area) layout: AMD64 Architecture Programmer's Manual
// Vol. 2 rev 3.42, Table B-4 "VMSA Layout, State Save Area for SEV-ES".
// Only the fields a VMM sets at reset are named.
const (
	SizeofVMSA = 0x1000

	vmsaES, vmsaCS, vmsaSS, vmsaDS, vmsaFS, vmsaGS = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
	vmsaGDTR, vmsaLDTR, vmsaIDTR, vmsaTR           = 0x60, 0x70, 0x80, 0x90

	vmsaEFER        = 0xd0
	vmsaCR4         = 0x148
	vmsaCR0         = 0x158
	vmsaDR7         = 0x160
	vmsaDR6         = 0x168
	vmsaRFLAGS      = 0x170
	vmsaRIP         = 0x178
	vmsaGPAT        = 0x268
	vmsaRDX         = 0x310
	vmsaSEVFeatures = 0x3b0
	vmsaXCR0        = 0x3e8
	vmsaMXCSR       = 0x408
	vmsaX87FCW      = 0x410

	// BSPResetEIP is the x86 reset vector the bootstrap processor starts at.
	BSPResetEIP = 0xfffffff0
)

// vmcbSeg writes a VMCB segment (selector u16, attrib u16, limit u32, base
// u64) at off.
func vmcbSeg(p []byte, off int, sel, attr uint16, limit uint32, base uint64) {
	binary.LittleEndian.PutUint16(p[off:], sel)
	binary.LittleEndian.PutUint16(p[off+2:], attr)
	binary.LittleEndian.PutUint32(p[off+4:], limit)
	binary.LittleEndian.PutUint64(p[off+8:], base)
}

// vmmResetState is the part of the initial register state that differs
// between VMMs.
type vmmResetState struct {
	csAttr, ssAttr, trAttr uint16
	rdx, gPAT              uint64
	mxcsr                  uint32
	fcw                    uint16
}

// defaultGPAT is the PAT MSR reset value (APM Vol. 2, section A.3).
const defaultGPAT = 0x0007040600070406

func resetState(vmm VMMType, eip, vcpuSig uint32) (vmmResetState, error) {
	switch vmm {
	case VMMQEMU: // QEMU target/i386/cpu.c x86_cpu_reset_hold, KVM sev_es_sync_vmsa
		return vmmResetState{0x9b, 0x93, 0x8b, uint64(vcpuSig), defaultGPAT, 0x1f80, 0x37f}, nil
	case VMMEC2: // EC2 marks the BSP code segment not-accessed and uses 0x600 in RDX
		cs := uint16(0x9b)
		if eip == BSPResetEIP {
			cs = 0x9a
		}
		return vmmResetState{cs, 0x92, 0x83, 0x600, defaultGPAT, 0, 0}, nil
	case VMMGCE: // GCE overwrites the PAT and uses 0x600 in RDX
		return vmmResetState{0x9b, 0x93, 0x8b, 0x600, 0x00070106, 0, 0}, nil
	}
	return vmmResetState{}, fmt.Errorf("unknown VMM type %d", int(vmm))
}

// VMSAPage returns the initial VMSA of a vCPU starting at eip, as the VMM
// measures it: segment state for the reset vector, the VMM's register
// values, vcpuSig in RDX (QEMU) and sevFeatures in SEV_FEATURES.
func VMSAPage(eip uint32, sevFeatures uint64, vcpuSig uint32, vmm VMMType) ([]byte, error) {
	st, err := resetState(vmm, eip, vcpuSig)
	if err != nil {
		return nil, err
	}
	p := make([]byte, SizeofVMSA)
	vmcbSeg(p, vmsaES, 0, 0x93, 0xffff, 0)
	vmcbSeg(p, vmsaCS, 0xf000, st.csAttr, 0xffff, uint64(eip&0xffff0000))
	vmcbSeg(p, vmsaSS, 0, st.ssAttr, 0xffff, 0)
	vmcbSeg(p, vmsaDS, 0, 0x93, 0xffff, 0)
	vmcbSeg(p, vmsaFS, 0, 0x93, 0xffff, 0)
	vmcbSeg(p, vmsaGS, 0, 0x93, 0xffff, 0)
	vmcbSeg(p, vmsaGDTR, 0, 0, 0xffff, 0)
	vmcbSeg(p, vmsaLDTR, 0, 0x82, 0xffff, 0)
	vmcbSeg(p, vmsaIDTR, 0, 0, 0xffff, 0)
	vmcbSeg(p, vmsaTR, 0, st.trAttr, 0xffff, 0)
	le := binary.LittleEndian
	le.PutUint64(p[vmsaEFER:], 0x1000) // EFER.SVME, set by KVM
	le.PutUint64(p[vmsaCR4:], 0x40)    // CR4.MCE, set by KVM
	le.PutUint64(p[vmsaCR0:], 0x10)    // CR0.ET
	le.PutUint64(p[vmsaDR7:], 0x400)
	le.PutUint64(p[vmsaDR6:], 0xffff0ff0)
	le.PutUint64(p[vmsaRFLAGS:], 0x2)
	le.PutUint64(p[vmsaRIP:], uint64(eip&0xffff))
	le.PutUint64(p[vmsaGPAT:], st.gPAT)
	le.PutUint64(p[vmsaRDX:], st.rdx)
	le.PutUint64(p[vmsaSEVFeatures:], sevFeatures)
	le.PutUint64(p[vmsaXCR0:], 0x1)
	le.PutUint32(p[vmsaMXCSR:], st.mxcsr)
	le.PutUint16(p[vmsaX87FCW:], st.fcw)
	return p, nil
}
