package measure

import (
	"cmp"
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"

	"github.com/mkcvm/mkcvm/ovmf"
)

// Errors callers branch on.
var (
	// ErrNoKernelHashes means a kernel was given but the firmware has no
	// SNP_KERNEL_HASHES section (or no SEV hash table), so the launch
	// digest could not cover kernel, initrd and command line.
	ErrNoKernelHashes = errors.New("firmware cannot measure the kernel")
)

// SNPFirmware is an OVMF image prepared for SNP launch digests: its layout
// and the digest over its pages, computed once and reused for every shape.
type SNPFirmware struct {
	Name string // input name for errors
	Size int    // image size in bytes
	// GPA is where the image is mapped: it ends at 4 GiB.
	GPA uint64
	// OVMFHash is the launch digest after the firmware pages (what
	// sev-snp-measure --mode snp:ovmf-hash prints).
	OVMFHash   SNPDigest
	Metadata   *ovmf.SEVMetadata
	ResetBlock ovmf.SEVESResetBlock
	// HashTable is the SEV hash table entry; zero when absent.
	HashTable ovmf.SEVHashTableEntry
}

// SNPOVMFHash returns the launch digest after measuring fw's pages as
// normal pages ending at 4 GiB (sev-snp-measure's snp:ovmf-hash). It needs
// no SEV metadata.
func SNPOVMFHash(fw []byte) (SNPDigest, error) {
	if err := checkFirmwareSize(fw); err != nil {
		return SNPDigest{}, err
	}
	hs, err := pageHashes(fw)
	if err != nil {
		return SNPDigest{}, err
	}
	var g gctx
	g.updateNormal(ovmf.FourGiB-uint64(len(fw)), hs)
	return g.ld, nil
}

func checkFirmwareSize(fw []byte) error {
	if len(fw) == 0 || len(fw)%pageSize != 0 || uint64(len(fw)) > ovmf.FourGiB {
		return fmt.Errorf("firmware size 0x%x is not a non-zero multiple of 4 KiB below 4 GiB", len(fw))
	}
	return nil
}

// NewSNPFirmware parses fw (named name in errors) and hashes its pages. If
// ovmfHash is non-nil it is used instead of hashing (a precomputed
// snp:ovmf-hash; the image is then only read for its layout). It refuses
// firmware without SEV metadata or SEV-ES reset block, and metadata
// sections that overlap the firmware's own address range.
func NewSNPFirmware(name string, fw []byte, ovmfHash *SNPDigest) (*SNPFirmware, error) {
	if err := checkFirmwareSize(fw); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	t, err := ovmf.ParseFooterTable(name, fw)
	if errors.Is(err, ovmf.ErrNoFooterTable) {
		return nil, fmt.Errorf("%s has no OVMF footer table and so no SEV metadata: it was not built for SEV-SNP and cannot be measured: %w", name, errors.Join(ovmf.ErrNoSEVMetadata, err))
	}
	if err != nil {
		return nil, err
	}
	m, err := ovmf.ParseSEVMetadata(name, fw, t)
	if errors.Is(err, ovmf.ErrNoSEVMetadata) {
		return nil, fmt.Errorf("%s has no SEV metadata: it was not built for SEV-SNP and cannot be measured: %w", name, err)
	}
	if err != nil {
		return nil, err
	}
	f := &SNPFirmware{Name: name, Size: len(fw), GPA: ovmf.FourGiB - uint64(len(fw)), Metadata: m}
	if f.ResetBlock, err = ovmf.ParseSEVESResetBlock(name, t); err != nil {
		return nil, err
	}
	if f.HashTable, err = ovmf.ParseSEVHashTableEntry(name, t); err != nil && !errors.Is(err, ovmf.ErrNotFound) {
		return nil, err
	}
	for i, s := range m.Sections {
		if s.End() > f.GPA {
			return nil, &ovmf.FormatError{Input: name, Offset: s.Offset, Field: fmt.Sprintf("SEV metadata section[%d].Base", i),
				Reason: fmt.Sprintf("section 0x%x+0x%x overlaps the firmware image at 0x%x", s.GPA, s.Size, f.GPA)}
		}
	}
	if ovmfHash != nil {
		f.OVMFHash = *ovmfHash
		return f, nil
	}
	hs, err := pageHashes(fw)
	if err != nil {
		return nil, err
	}
	var g gctx
	g.updateNormal(f.GPA, hs)
	f.OVMFHash = g.ld
	return f, nil
}

// HasKernelHashes reports whether the firmware can measure a direct-boot
// kernel, initrd and command line under SNP.
func (f *SNPFirmware) HasKernelHashes() bool {
	return f.Metadata.Has(ovmf.SNPKernelHashes) && f.HashTable.Supported()
}

// SNPShape is what varies between launches of the same boot artifacts.
type SNPShape struct {
	VCPUs   int
	VCPUSig uint32 // CPUID Fn0000_0001_EAX (QEMU puts it in RDX)
	VMM     VMMType
	// GuestFeatures is the VMSA SEV_FEATURES value (0x1 = SNPActive;
	// 0x21 adds DebugSwap, which newer Linux KVM enables by default).
	GuestFeatures uint64
}

// SNPLaunch computes SNP launch digests of one firmware and one set of
// kernel hashes for any number of shapes. Inputs are hashed once, in
// NewSNPLaunch; each digest then costs one hash per vCPU.
type SNPLaunch struct {
	fw     *SNPFirmware
	hashes *SEVHashes
	meta   map[VMMType]SNPDigest // digest after the metadata sections
}

// NewSNPLaunch prepares digests for fw with the kernel hashes h (nil: no
// kernel). It returns ErrNoKernelHashes when h is given but the firmware
// has no SNP_KERNEL_HASHES section or SEV hash table.
func NewSNPLaunch(fw *SNPFirmware, h *SEVHashes) (*SNPLaunch, error) {
	if h != nil && !fw.HasKernelHashes() {
		what := "no SNP_KERNEL_HASHES section in its SEV metadata"
		if fw.Metadata.Has(ovmf.SNPKernelHashes) {
			what = "no SEV hash table address"
		}
		return nil, fmt.Errorf("%w: %s has %s, so the launch digest cannot cover the kernel, initrd and command line; use a firmware built for measured direct boot (OvmfPkg/AmdSev with kernel hashes), or measure the firmware alone", ErrNoKernelHashes, fw.Name, what)
	}
	l := &SNPLaunch{fw: fw, hashes: h, meta: map[VMMType]SNPDigest{}}
	for _, v := range VMMTypes {
		d, err := l.metadataDigest(v)
		if err != nil {
			return nil, err
		}
		l.meta[v] = d
	}
	return l, nil
}

// metadataDigest extends the firmware digest with the metadata sections as
// vmm launches them (QEMU target/i386/sev.c snp_launch_update_data and the
// sev-snp-measure VMM variants): GCE leaves SEC memory unmeasured, EC2
// measures the CPUID page after all other sections.
func (l *SNPLaunch) metadataDigest(vmm VMMType) (SNPDigest, error) {
	g := gctx{ld: l.fw.OVMFHash}
	for i, s := range l.fw.Metadata.Sections {
		gpa, n := uint64(s.GPA), uint64(s.Size)
		switch s.Type {
		case ovmf.SNPSecMemory:
			if vmm == VMMGCE {
				g.updateZeroContent(pageTypeUnmeasured, gpa, n)
			} else {
				g.updateZeroContent(pageTypeZero, gpa, n)
			}
		case ovmf.SNPSecrets:
			g.update(pageTypeSecrets, gpa, &zeroDigest)
		case ovmf.SNPCPUID:
			if vmm != VMMEC2 {
				g.update(pageTypeCPUID, gpa, &zeroDigest)
			}
		case ovmf.SNPSVSMCAA:
			g.updateZeroContent(pageTypeZero, gpa, n)
		case ovmf.SNPKernelHashes:
			if err := l.updateKernelHashes(&g, i, s); err != nil {
				return SNPDigest{}, err
			}
		default:
			return SNPDigest{}, fmt.Errorf("%s: SEV metadata section[%d]: unknown type %s", l.fw.Name, i, s.Type)
		}
	}
	if vmm == VMMEC2 {
		for _, s := range l.fw.Metadata.Sections {
			if s.Type == ovmf.SNPCPUID {
				g.update(pageTypeCPUID, uint64(s.GPA), &zeroDigest)
			}
		}
	}
	return g.ld, nil
}

// updateKernelHashes measures the kernel-hashes section: the page holding
// QEMU's SEV hash table, or zero pages without a kernel.
func (l *SNPLaunch) updateKernelHashes(g *gctx, i int, s ovmf.SEVMetadataSection) error {
	if l.hashes == nil {
		g.updateZeroContent(pageTypeZero, uint64(s.GPA), uint64(s.Size))
		return nil
	}
	if s.Size != pageSize {
		return fmt.Errorf("%s: SEV metadata section[%d] (SNP_KERNEL_HASHES) is 0x%x bytes, want one page", l.fw.Name, i, s.Size)
	}
	p, err := l.hashes.Page(int(l.fw.HashTable.GPA % pageSize))
	if err != nil {
		return fmt.Errorf("%s: SEV hash table at 0x%x: %w", l.fw.Name, l.fw.HashTable.GPA, err)
	}
	h := sha512.Sum384(p)
	g.update(pageTypeNormal, uint64(s.GPA), (*SNPDigest)(&h))
	return nil
}

// Digest returns the launch digest of one shape.
func (l *SNPLaunch) Digest(s SNPShape) (SNPDigest, error) {
	ds, err := l.Digests([]SNPShape{s})
	if err != nil {
		return SNPDigest{}, err
	}
	return ds[0], nil
}

// Digests returns the launch digests of many shapes, in order. Shapes that
// differ only in vCPU count share one VMSA chain: the digest for n vCPUs is
// a prefix of the digest for n+1.
func (l *SNPLaunch) Digests(shapes []SNPShape) ([]SNPDigest, error) {
	type key struct {
		sig uint32
		vmm VMMType
		gf  uint64
	}
	out := make([]SNPDigest, len(shapes))
	groups := map[key][]int{}
	var order []key
	for i, s := range shapes {
		if err := l.checkShape(s); err != nil {
			return nil, fmt.Errorf("shape %d: %w", i, err)
		}
		k := key{s.VCPUSig, s.VMM, s.GuestFeatures}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range order {
		idx := groups[k]
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(shapes[a].VCPUs, shapes[b].VCPUs) })
		if err := l.chain(shapes[idx[0]], idx, shapes, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (l *SNPLaunch) checkShape(s SNPShape) error {
	switch {
	case s.VCPUs < 1:
		return fmt.Errorf("vCPU count %d: want at least 1", s.VCPUs)
	case !s.VMM.valid():
		return fmt.Errorf("unknown VMM type %d", int(s.VMM))
	case s.VCPUs > 1 && l.fw.ResetBlock.APResetEIP == 0:
		return fmt.Errorf("%s: SEV-ES reset block has AP reset address 0, so it cannot start %d vCPUs", l.fw.Name, s.VCPUs)
	}
	return nil
}

// chain measures VMSA pages for the shapes idx (sorted by vCPU count, same
// signature, VMM and features) and stores their digests.
func (l *SNPLaunch) chain(s SNPShape, idx []int, shapes []SNPShape, out []SNPDigest) error {
	bsp, ap, err := vmsaHashes(l.fw.ResetBlock.APResetEIP, s.GuestFeatures, s.VCPUSig, s.VMM, sha512.Sum384)
	if err != nil {
		return err
	}
	g := gctx{ld: l.meta[s.VMM]}
	n := 0
	for _, i := range idx {
		for ; n < shapes[i].VCPUs; n++ {
			if n == 0 {
				g.update(pageTypeVMSA, vmsaGPA, (*SNPDigest)(&bsp))
			} else {
				g.update(pageTypeVMSA, vmsaGPA, (*SNPDigest)(&ap))
			}
		}
		out[i] = g.ld
	}
	return nil
}

// vmsaHashes hashes the BSP and AP VMSA pages with h.
func vmsaHashes[D any](apEIP uint32, features uint64, sig uint32, vmm VMMType, h func([]byte) D) (bsp, ap D, err error) {
	p, err := VMSAPage(BSPResetEIP, features, sig, vmm)
	if err != nil {
		return bsp, ap, err
	}
	bsp = h(p)
	if p, err = VMSAPage(apEIP, features, sig, vmm); err != nil {
		return bsp, ap, err
	}
	return bsp, h(p), nil
}

// SNPLaunchDigest is the one-shot form: it parses and hashes fw (named
// name), applies the kernel hashes h (nil: no kernel) and returns the
// launch digest of shape s.
func SNPLaunchDigest(name string, fw []byte, h *SEVHashes, s SNPShape) (SNPDigest, error) {
	f, err := NewSNPFirmware(name, fw, nil)
	if err != nil {
		return SNPDigest{}, err
	}
	l, err := NewSNPLaunch(f, h)
	if err != nil {
		return SNPDigest{}, err
	}
	return l.Digest(s)
}
