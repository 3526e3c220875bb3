package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mkcvm/mkcvm/ovmf"
)

// svsmInfoGUID identifies the Coconut SVSM footer table entry whose first
// UINT32 is the SVSM entry point as an offset into the SVSM image
// (coconut-svsm QEMU target/i386/sev.c at 0e64fb84, "SVSM_INFO_GUID").
var svsmInfoGUID = ovmf.MustParseGUID("a789a612-0597-4c4b-a49f-cbb1fe9d1ddd")

// SVSMInputs describe an SNP launch with a Coconut SVSM (QEMU only): the
// OVMF image ends at 4 GiB, the OVMF variable store of VarsSize bytes sits
// below it, and the SVSM image below that.
type SVSMInputs struct {
	OVMFName string
	OVMF     []byte
	SVSMName string
	SVSM     []byte
	VarsSize int
	VCPUs    int
	VCPUSig  uint32
}

// SNPSVSMLaunchDigest computes the launch digest of an SNP guest started
// through a Coconut SVSM: the OVMF and SVSM images as normal pages, the
// SVSM's SEV metadata sections, and one VMSA per vCPU, all starting at the
// SVSM entry point in 64-bit mode with SEV_FEATURES 0x1.
func SNPSVSMLaunchDigest(in SVSMInputs) (SNPDigest, error) {
	if err := checkFirmwareSize(in.OVMF); err != nil {
		return SNPDigest{}, fmt.Errorf("%s: %w", in.OVMFName, err)
	}
	if err := checkFirmwareSize(in.SVSM); err != nil {
		return SNPDigest{}, fmt.Errorf("%s: %w", in.SVSMName, err)
	}
	if in.VarsSize < 0 || in.VarsSize%pageSize != 0 {
		return SNPDigest{}, fmt.Errorf("OVMF variable store size 0x%x is not a multiple of 4 KiB", in.VarsSize)
	}
	if in.VCPUs < 1 {
		return SNPDigest{}, fmt.Errorf("vCPU count %d: want at least 1", in.VCPUs)
	}
	ovmfGPA := uint64(ovmf.FourGiB - len(in.OVMF))
	if uint64(in.VarsSize)+uint64(len(in.SVSM)) > ovmfGPA {
		return SNPDigest{}, fmt.Errorf("%s (0x%x bytes) and 0x%x bytes of variables do not fit below the firmware at 0x%x", in.SVSMName, len(in.SVSM), in.VarsSize, ovmfGPA)
	}
	svsmGPA := ovmfGPA - uint64(in.VarsSize) - uint64(len(in.SVSM))
	m, entry, err := parseSVSM(in.SVSMName, in.SVSM)
	if err != nil {
		return SNPDigest{}, err
	}
	var g gctx
	for _, img := range []struct {
		gpa  uint64
		data []byte
	}{{ovmfGPA, in.OVMF}, {svsmGPA, in.SVSM}} {
		hs, err := pageHashes(img.data)
		if err != nil {
			return SNPDigest{}, err
		}
		g.updateNormal(img.gpa, hs)
	}
	l := &SNPLaunch{fw: &SNPFirmware{Name: in.SVSMName, Metadata: m, OVMFHash: g.ld}}
	if g.ld, err = l.metadataDigest(VMMQEMU); err != nil {
		return SNPDigest{}, err
	}
	vmsa := sha512.Sum384(SVSMVMSAPage(svsmGPA+uint64(entry), in.VCPUSig))
	for range in.VCPUs {
		g.update(pageTypeVMSA, vmsaGPA, (*SNPDigest)(&vmsa))
	}
	return g.ld, nil
}

// parseSVSM reads the SVSM image's SEV metadata and entry point offset.
func parseSVSM(name string, b []byte) (*ovmf.SEVMetadata, uint32, error) {
	t, err := ovmf.ParseFooterTable(name, b)
	if err != nil {
		return nil, 0, err
	}
	m, err := ovmf.ParseSEVMetadata(name, b, t)
	if err != nil && !errors.Is(err, ovmf.ErrNoSEVMetadata) {
		return nil, 0, err
	}
	if m == nil {
		m = &ovmf.SEVMetadata{}
	}
	for _, s := range m.Sections {
		if s.Type == ovmf.SNPKernelHashes {
			return nil, 0, fmt.Errorf("%s: SVSM images cannot have an SNP_KERNEL_HASHES section", name)
		}
	}
	e, ok := t.Lookup(svsmInfoGUID)
	if !ok {
		return nil, 0, &ovmf.FormatError{Input: name, Offset: int64(len(b)), Field: "footer table",
			Reason: fmt.Sprintf("no SVSM info entry %s (not a Coconut SVSM image)", svsmInfoGUID), Err: ovmf.ErrNotFound}
	}
	if len(e.Data) < 4 {
		return nil, 0, &ovmf.FormatError{Input: name, Offset: e.Offset, Field: "SVSM info entry", Reason: fmt.Sprintf("data is %d bytes, want at least 4", len(e.Data))}
	}
	return m, binary.LittleEndian.Uint32(e.Data), nil
}

// SVSMVMSAPage is the VMSA QEMU (coconut-svsm fork) gives every vCPU of an
// SVSM launch: flat 64-bit-capable segments, CR0.PE, RIP at the SVSM entry,
// the vCPU signature in RDX and SEV_FEATURES 0x1. x87 FCW stays 0 and MXCSR
// is 0x1f80, as in the reference measurements of a real launch.
func SVSMVMSAPage(rip uint64, vcpuSig uint32) []byte {
	p := make([]byte, SizeofVMSA)
	for _, off := range []int{vmsaES, vmsaSS, vmsaDS, vmsaFS} {
		vmcbSeg(p, off, 16, 0xc93, 0xffffffff, 0)
	}
	vmcbSeg(p, vmsaCS, 8, 0xc9b, 0xffffffff, 0)
	vmcbSeg(p, vmsaGS, 0, 0x93, 0xffff, 0)
	vmcbSeg(p, vmsaGDTR, 0, 0, 0xffff, 0)
	vmcbSeg(p, vmsaIDTR, 0, 0, 0xffff, 0)
	vmcbSeg(p, vmsaLDTR, 0, 0x82, 0xffff, 0)
	vmcbSeg(p, vmsaTR, 0, 0x8b, 0xffff, 0)
	le := binary.LittleEndian
	le.PutUint64(p[vmsaEFER:], 0x1000)
	le.PutUint64(p[vmsaCR4:], 0x40)
	le.PutUint64(p[vmsaCR0:], 0x11)
	le.PutUint64(p[vmsaDR7:], 0x400)
	le.PutUint64(p[vmsaDR6:], 0xffff0ff0)
	le.PutUint64(p[vmsaRFLAGS:], 0x2)
	le.PutUint64(p[vmsaRIP:], rip)
	le.PutUint64(p[vmsaGPAT:], defaultGPAT)
	le.PutUint64(p[vmsaRDX:], uint64(vcpuSig))
	le.PutUint64(p[vmsaSEVFeatures:], 0x1)
	le.PutUint64(p[vmsaXCR0:], 0x1)
	le.PutUint32(p[vmsaMXCSR:], 0x1f80)
	return p
}

// SVSMVMSAPages returns the VMSA pages of an SVSM launch (one per vCPU, all
// equal), for --dump-vmsa.
func SVSMVMSAPages(svsmName string, svsm, ovmfImage []byte, varsSize, vcpus int, vcpuSig uint32) ([][]byte, error) {
	_, entry, err := parseSVSM(svsmName, svsm)
	if err != nil {
		return nil, err
	}
	gpa := uint64(ovmf.FourGiB) - uint64(len(ovmfImage)) - uint64(varsSize) - uint64(len(svsm))
	p := SVSMVMSAPage(gpa+uint64(entry), vcpuSig)
	pages := make([][]byte, vcpus)
	for i := range pages {
		pages[i] = p
	}
	return pages, nil
}
