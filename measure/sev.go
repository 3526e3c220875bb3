package measure

import (
	"crypto/sha256"
	"encoding"
	"errors"
	"fmt"
	"hash"

	"github.com/mkcvm/mkcvm/ovmf"
)

// SEV and SEV-ES launch measurement, SEV Secure Encrypted Virtualization
// API (AMD #55766) rev 0.24, section 6.5 LAUNCH_UPDATE_DATA and 6.6
// LAUNCH_UPDATE_VMSA: the PSP hashes, with SHA-256, every region the VMM
// encrypts in launch order. QEMU encrypts the whole firmware image, then
// (with a measured direct boot) the padded SEV hash table, then (SEV-ES)
// one VMSA page per vCPU. The report's MEASUREMENT is an HMAC over this
// digest keyed by the TIK; the digest itself is the reference value.

// SizeofSEVDigest is the size of an SEV/SEV-ES launch digest.
const SizeofSEVDigest = sha256.Size

// SEVDigest is an SEV or SEV-ES launch digest.
type SEVDigest [SizeofSEVDigest]byte

// SEVLaunch computes SEV and SEV-ES launch digests of one firmware and one
// set of kernel hashes. The firmware and hash table are hashed once.
type SEVLaunch struct {
	name  string
	state []byte // marshaled SHA-256 state after firmware and hash table
	reset *ovmf.SEVESResetBlock
}

// NewSEVLaunch hashes fw (named name in errors) and, when h is non-nil, the
// SEV hash table. It returns ErrNoKernelHashes when h is given but the
// firmware reserves no SEV hash table.
func NewSEVLaunch(name string, fw []byte, h *SEVHashes) (*SEVLaunch, error) {
	l := &SEVLaunch{name: name}
	t, err := ovmf.ParseFooterTable(name, fw)
	switch {
	case errors.Is(err, ovmf.ErrNoFooterTable):
		t = &ovmf.FooterTable{}
	case err != nil:
		return nil, err
	}
	if rb, err := ovmf.ParseSEVESResetBlock(name, t); err == nil {
		l.reset = &rb
	} else if !errors.Is(err, ovmf.ErrNotFound) {
		return nil, err
	}
	d := sha256.New()
	d.Write(fw)
	if h != nil {
		ht, err := ovmf.ParseSEVHashTableEntry(name, t)
		if err != nil && !errors.Is(err, ovmf.ErrNotFound) {
			return nil, err
		}
		if !ht.Supported() {
			return nil, fmt.Errorf("%w: %s reserves no SEV hash table, so the launch digest cannot cover the kernel, initrd and command line", ErrNoKernelHashes, name)
		}
		d.Write(h.Table())
	}
	if l.state, err = d.(encoding.BinaryMarshaler).MarshalBinary(); err != nil {
		return nil, fmt.Errorf("saving SHA-256 state: %w", err)
	}
	return l, nil
}

func (l *SEVLaunch) resume() hash.Hash {
	d := sha256.New()
	// The state was produced by the same implementation; it cannot fail.
	_ = d.(encoding.BinaryUnmarshaler).UnmarshalBinary(l.state)
	return d
}

// SEVDigest returns the plain-SEV launch digest.
func (l *SEVLaunch) SEVDigest() SEVDigest {
	var out SEVDigest
	l.resume().Sum(out[:0])
	return out
}

// SEVESDigest returns the SEV-ES launch digest for vcpus vCPUs with CPUID
// signature sig under vmm. SEV-ES VMSAs carry SEV_FEATURES 0.
func (l *SEVLaunch) SEVESDigest(vcpus int, sig uint32, vmm VMMType) (SEVDigest, error) {
	if l.reset == nil {
		return SEVDigest{}, fmt.Errorf("%s has no SEV-ES reset block in its footer table: it cannot start an SEV-ES guest", l.name)
	}
	if vcpus < 1 {
		return SEVDigest{}, fmt.Errorf("vCPU count %d: want at least 1", vcpus)
	}
	if vcpus > 1 && l.reset.APResetEIP == 0 {
		return SEVDigest{}, fmt.Errorf("%s: SEV-ES reset block has AP reset address 0, so it cannot start %d vCPUs", l.name, vcpus)
	}
	bsp, err := VMSAPage(BSPResetEIP, 0, sig, vmm)
	if err != nil {
		return SEVDigest{}, err
	}
	ap, err := VMSAPage(l.reset.APResetEIP, 0, sig, vmm)
	if err != nil {
		return SEVDigest{}, err
	}
	d := l.resume()
	d.Write(bsp)
	for range vcpus - 1 {
		d.Write(ap)
	}
	var out SEVDigest
	d.Sum(out[:0])
	return out, nil
}

// VMSAPages returns the VMSA pages a launch of vcpus vCPUs measures: the
// BSP page, then one AP page per further vCPU. features is SEV_FEATURES
// (the guest features under SNP, 0 under SEV-ES).
func (l *SEVLaunch) VMSAPages(vcpus int, features uint64, sig uint32, vmm VMMType) ([][]byte, error) {
	if l.reset == nil {
		return nil, fmt.Errorf("%s has no SEV-ES reset block in its footer table", l.name)
	}
	if vcpus > 1 && l.reset.APResetEIP == 0 {
		return nil, fmt.Errorf("%s: SEV-ES reset block has AP reset address 0, so it cannot start %d vCPUs", l.name, vcpus)
	}
	var pages [][]byte
	for i := range vcpus {
		eip := uint32(BSPResetEIP)
		if i > 0 {
			eip = l.reset.APResetEIP
		}
		p, err := VMSAPage(eip, features, sig, vmm)
		if err != nil {
			return nil, err
		}
		pages = append(pages, p)
	}
	return pages, nil
}
