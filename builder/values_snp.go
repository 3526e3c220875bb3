package builder

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

func init() {
	registerValues("snp", snpValues)
	registerValues("seves", sevesValues)
	registerValues("sev", sevValues)
}

// noteNoKernelHashes is the plain-words caveat for firmware that cannot
// measure a direct-boot kernel.
const noteNoKernelHashes = "the launch digest covers only the firmware: this firmware has no SNP_KERNEL_HASHES section (or SEV hash table), so it cannot measure the kernel, initrd or command line, and the digest does not cover them"

// snpPrepared holds the hashed inputs of one MeasureInputs so that all
// shapes of a build reuse them (inputs are hashed once, not per shape).
type snpPrepared struct {
	mu            sync.Mutex // guards the lazily built fields
	in            *MeasureInputs
	name          string
	fw            []byte
	hashes        *measure.SEVHashes
	snpFW         *measure.SNPFirmware
	snpErr        error
	launch        map[bool]*measure.SNPLaunch // key: with kernel hashes
	sevL          *measure.SEVLaunch
	sevWithKernel bool
	sevErr        error
}

var (
	snpCacheMu sync.Mutex
	snpCache   *snpPrepared
)

// prepareSNP returns the hashed inputs for in, reusing the previous
// result when called again with the same inputs.
func prepareSNP(in *MeasureInputs) (*snpPrepared, error) {
	snpCacheMu.Lock()
	defer snpCacheMu.Unlock()
	if p := snpCache; p != nil && p.in == in {
		return p, nil
	}
	p := &snpPrepared{in: in, name: "firmware image", fw: in.Firmware,
		launch: map[bool]*measure.SNPLaunch{}}
	if p.fw == nil {
		p.name, p.fw = "firmware code image", in.FirmwareCode
	}
	if p.fw == nil {
		return nil, errors.New("SEV/SNP reference values need a firmware image in the recipe")
	}
	if in.Kernel != nil {
		h := measure.NewSEVHashes(in.Kernel, in.Initrd, in.Cmdline)
		p.hashes = &h
	}
	snpCache = p
	return p, nil
}

func (p *snpPrepared) snpLaunch() (*measure.SNPLaunch, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.snpFW == nil && p.snpErr == nil {
		p.snpFW, p.snpErr = measure.NewSNPFirmware(p.name, p.fw, nil)
	}
	if p.snpErr != nil {
		return nil, false, p.snpErr
	}
	withKernel := p.hashes != nil && p.snpFW.HasKernelHashes()
	if l, ok := p.launch[withKernel]; ok {
		return l, withKernel, nil
	}
	h := p.hashes
	if !withKernel {
		h = nil
	}
	l, err := measure.NewSNPLaunch(p.snpFW, h)
	if err != nil {
		return nil, false, err
	}
	p.launch[withKernel] = l
	return l, withKernel, nil
}

func (p *snpPrepared) sevLaunch() (*measure.SEVLaunch, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sevL == nil && p.sevErr == nil {
		p.sevL, p.sevWithKernel, p.sevErr = p.newSEVLaunch()
	}
	return p.sevL, p.sevWithKernel, p.sevErr
}

// newSEVLaunch hashes the kernel into the SEV launch when the firmware can
// measure it, and otherwise falls back to the firmware alone.
func (p *snpPrepared) newSEVLaunch() (*measure.SEVLaunch, bool, error) {
	if p.hashes != nil {
		l, err := measure.NewSEVLaunch(p.name, p.fw, p.hashes)
		if err == nil {
			return l, true, nil
		}
		if !errors.Is(err, measure.ErrNoKernelHashes) {
			return nil, false, err
		}
	}
	l, err := measure.NewSEVLaunch(p.name, p.fw, nil)
	return l, false, err
}

// snpShape resolves a recipe shape into measurement parameters and
// records the resolved values (signature, VMM, guest features) in out.
func snpShape(s Shape, out *manifest.Shape) (measure.SNPShape, error) {
	r := measure.SNPShape{VCPUs: s.VCPUs, VMM: measure.VMMQEMU, GuestFeatures: 0x1}
	if s.VMM != "" {
		v, err := measure.ParseVMMType(s.VMM)
		if err != nil {
			return r, fmt.Errorf("vmm: %w", err)
		}
		r.VMM = v
	}
	if s.GuestFeatures != "" {
		gf, err := strconv.ParseUint(s.GuestFeatures, 0, 64)
		if err != nil {
			return r, fmt.Errorf("guest_features %q: %w", s.GuestFeatures, err)
		}
		r.GuestFeatures = gf
	}
	switch {
	case s.VCPUSig != "":
		sig, err := strconv.ParseUint(s.VCPUSig, 0, 32)
		if err != nil {
			return r, fmt.Errorf("vcpu_sig %q: %w", s.VCPUSig, err)
		}
		r.VCPUSig = uint32(sig)
	case s.VCPUType != "":
		vt, ok := measure.LookupVCPUType(s.VCPUType)
		if !ok {
			return r, fmt.Errorf("vcpu_type %q is not a known model (%v)", s.VCPUType, measure.VCPUTypeNames())
		}
		r.VCPUSig = vt.Sig()
	case r.VMM == measure.VMMQEMU:
		return r, errors.New("QEMU shapes need vcpu_type or vcpu_sig: QEMU puts the CPUID signature in the VMSA")
	}
	if r.VCPUs < 1 {
		return r, fmt.Errorf("vcpus %d: want at least 1", r.VCPUs)
	}
	out.VCPUSig = fmt.Sprintf("0x%x", r.VCPUSig)
	if out.VMM == "" {
		out.VMM = strings.ToLower(r.VMM.String()) // the recipe's spelling: qemu, ec2, gce
	}
	out.GuestFeatures = fmt.Sprintf("0x%x", r.GuestFeatures)
	return r, nil
}

func snpValues(in *MeasureInputs, s Shape, out *manifest.Shape) error {
	p, err := prepareSNP(in)
	if err != nil {
		return err
	}
	shape, err := snpShape(s, out)
	if err != nil {
		return err
	}
	l, withKernel, err := p.snpLaunch()
	if err != nil {
		return err
	}
	d, err := l.Digest(shape)
	if err != nil {
		return err
	}
	out.SNP = &manifest.SNPValues{Mode: "snp", LaunchDigest: hex.EncodeToString(d[:]),
		KernelHashes: p.snpFW.HasKernelHashes(), OVMFHash: hex.EncodeToString(p.snpFW.OVMFHash[:]), CoversKernel: withKernel}
	if p.hashes != nil && !withKernel {
		out.Notes = append(out.Notes, noteNoKernelHashes)
	}
	return nil
}

func sevesValues(in *MeasureInputs, s Shape, out *manifest.Shape) error {
	p, err := prepareSNP(in)
	if err != nil {
		return err
	}
	shape, err := snpShape(s, out)
	if err != nil {
		return err
	}
	out.GuestFeatures = s.GuestFeatures // not measured: SEV-ES VMSAs carry SEV_FEATURES 0
	l, withKernel, err := p.sevLaunch()
	if err != nil {
		return err
	}
	d, err := l.SEVESDigest(shape.VCPUs, shape.VCPUSig, shape.VMM)
	if err != nil {
		return err
	}
	out.SNP = sevValuesOf("seves", d, p.hashes, withKernel, out)
	return nil
}

func sevValues(in *MeasureInputs, _ Shape, out *manifest.Shape) error {
	p, err := prepareSNP(in)
	if err != nil {
		return err
	}
	l, withKernel, err := p.sevLaunch()
	if err != nil {
		return err
	}
	out.SNP = sevValuesOf("sev", l.SEVDigest(), p.hashes, withKernel, out)
	return nil
}

func sevValuesOf(mode string, d measure.SEVDigest, h *measure.SEVHashes, withKernel bool, out *manifest.Shape) *manifest.SNPValues {
	if h != nil && !withKernel {
		out.Notes = append(out.Notes, noteNoKernelHashes)
	}
	return &manifest.SNPValues{Mode: mode, LaunchDigest: hex.EncodeToString(d[:]), KernelHashes: withKernel, CoversKernel: withKernel}
}
