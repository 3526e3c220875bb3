package measure

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/mkcvm/mkcvm/ovmf"
)

// RTMRBasis says how far a predicted RTMR can be trusted
// (manifest.TDXValues.RTMRBasis).
type RTMRBasis string

const (
	// RTMRPredicted: computed from the pinned inputs alone.
	RTMRPredicted RTMRBasis = "predicted"
	// RTMRProfile: rests on platform data captured once from a real boot
	// (a pinned profile input of the shape), such as QEMU's ACPI tables.
	RTMRProfile RTMRBasis = "profile"
	// RTMRNotPinned: no value; the register depends on data the inputs do
	// not pin.
	RTMRNotPinned RTMRBasis = "not-pinned"
)

// TDXInputs are the inputs of a TDX shape's reference values. Only
// Firmware is required; without Kernel only MRTD is computed.
type TDXInputs struct {
	FirmwareName string // names the firmware in errors
	Firmware     []byte // the whole VARS+CODE flash image (e.g. OVMF.fd)
	PageOrder    TDXPageOrder

	KernelName string
	Kernel     []byte // bzImage given to QEMU -kernel
	Initrd     []byte // -initrd; nil means none
	Cmdline    string // -append
	MemoryMiB  int    // guest RAM
	Machine    string // QEMU machine ("q35" when empty)

	// FirmwareMeasures overrides detection of the firmware's CC measurement
	// driver (TdTcg2Dxe in the DXE volume).
	FirmwareMeasures *bool
	// StubMeasures overrides detection of a CC-aware Linux EFI stub
	// (kernel version >= 6.9), which measures the command line and initrd
	// into RTMR2.
	StubMeasures *bool
	// Workload is the container the in-guest runner starts; it extends
	// RTMR3 (WorkloadRTMR) with the workload events before it asks for a
	// quote. nil: RTMR3 holds only what the boot extends (nothing).
	Workload *WorkloadRef
	// Profile is a CC event log captured from a real boot of the same
	// firmware, QEMU version, machine and memory size; its RTMR0 events
	// (TD HOB, ACPI tables, boot variables) are taken as given.
	ProfileName string
	Profile     *EventLog
}

// TDXResult holds a shape's TDX reference values and the predicted CC event
// log that explains them.
type TDXResult struct {
	MRTD      [48]byte
	PageOrder TDXPageOrder
	Metadata  *ovmf.TDXMetadata
	// Boot is false when no kernel was given: only MRTD is set.
	Boot             bool
	FirmwareMeasures bool
	StubMeasures     bool
	RTMR             [NumRTMRs][RTMRSize]byte
	Basis            [NumRTMRs]RTMRBasis
	Events           []CCEvent // in log order
	// WorkloadEvents are the runner's RTMR3 events (they go to the
	// runner's own log, not to the CC event log).
	WorkloadEvents []WorkloadEvent
	Notes          []string
}

// MinCCStubKernel is the first Linux version whose EFI stub measures into
// EFI_CC_MEASUREMENT_PROTOCOL when there is no TCG2 protocol (efi/libstub
// "Measure into CC protocol if TCG2 protocol is absent", merged for v6.9).
var MinCCStubKernel = [2]int{6, 9}

// TDX computes MRTD and, when a kernel is given, the RTMRs of a QEMU direct
// boot with their predicted CC event log. It performs no I/O.
func TDX(in TDXInputs) (*TDXResult, error) {
	order, err := ParseTDXPageOrder(string(in.PageOrder))
	if err != nil {
		return nil, err
	}
	name := in.FirmwareName
	if name == "" {
		name = "firmware"
	}
	mrtd, md, err := TDXFirmwareMRTD(name, in.Firmware, order)
	if err != nil {
		return nil, err
	}
	r := &TDXResult{MRTD: mrtd, PageOrder: order, Metadata: md}
	if err := r.boot(name, in); err != nil {
		return nil, err
	}
	if in.Workload != nil {
		ev, err := WorkloadEvents(*in.Workload)
		if err != nil {
			return nil, fmt.Errorf("TDX RTMR%d: %w", WorkloadRTMR, err)
		}
		r.WorkloadEvents = ev
		for _, e := range ev {
			r.RTMR[WorkloadRTMR] = [RTMRSize]byte(Extend(AlgSHA384, r.RTMR[WorkloadRTMR][:], e.Digest(crypto.SHA384)))
		}
		r.Basis[WorkloadRTMR] = RTMRPredicted
		r.Notes = append(r.Notes, fmt.Sprintf("RTMR%d holds the %d workload events the runner extends before its quote (runner log, not the CC event log)", WorkloadRTMR, len(ev)))
	}
	return r, nil
}

// boot fills the RTMRs the boot extends (RTMR0-3 before the runner).
func (r *TDXResult) boot(name string, in TDXInputs) error {
	var err error
	if in.Kernel == nil {
		r.Basis = [NumRTMRs]RTMRBasis{RTMRNotPinned, RTMRNotPinned, RTMRNotPinned, RTMRNotPinned}
		r.Notes = append(r.Notes, "no kernel given: RTMRs not computed")
		return nil
	}
	r.Boot = true
	if r.FirmwareMeasures, err = firmwareMeasures(name, in); err != nil {
		return err
	}
	if !r.FirmwareMeasures && in.Profile != nil {
		return fmt.Errorf("profile %s is a CC event log, but %s has no CC measurement driver (TdTcg2Dxe) to write one: the profile belongs to other firmware (override the detection if it is wrong)", in.ProfileName, name)
	}
	if !r.FirmwareMeasures {
		// Nothing extends the RTMRs: they stay zero, and neither they nor
		// MRTD cover the kernel, initrd or command line.
		r.Basis = [NumRTMRs]RTMRBasis{RTMRPredicted, RTMRPredicted, RTMRPredicted, RTMRPredicted}
		r.Notes = append(r.Notes, fmt.Sprintf("%s has no CC measurement driver (TdTcg2Dxe %s): the firmware extends no RTMR, and no TDX register covers the kernel, initrd or command line", name, ovmf.TdTcg2DxeFileGUID))
		return nil
	}
	return r.predictBoot(name, in)
}

// firmwareMeasures applies the override or detects TdTcg2Dxe.
func firmwareMeasures(name string, in TDXInputs) (bool, error) {
	if in.FirmwareMeasures != nil {
		return *in.FirmwareMeasures, nil
	}
	md, err := ovmf.ParseTDXMetadata(name, in.Firmware)
	if err != nil {
		return false, err
	}
	bfv, _ := md.Section(ovmf.TDXSectionBFV) // ParseTDXMetadata checked it lies inside the image
	vols, err := ExtractOVMFVolumes(name, in.Firmware[bfv.DataOffset:bfv.DataOffset+bfv.RawDataSize])
	if err != nil {
		return false, fmt.Errorf("detecting the CC measurement driver: %w", err)
	}
	return ovmf.HasFFSFile(vols.DXEFV, ovmf.TdTcg2DxeFileGUID, ovmf.FVFileTypeDriver) ||
		ovmf.HasFFSFile(vols.PEIFV, ovmf.TdTcg2DxeFileGUID, ovmf.FVFileTypeDriver), nil
}

// predictBoot fills the RTMRs and events for a measuring firmware.
func (r *TDXResult) predictBoot(name string, in TDXInputs) error {
	kname := in.KernelName
	if kname == "" {
		kname = "kernel"
	}
	machine := in.Machine
	if machine == "" {
		machine = "q35"
	}
	below, err := QEMUBelow4G(machine, in.MemoryMiB)
	if err != nil {
		return fmt.Errorf("TDX shape: %w", err)
	}
	kd, err := KernelDigest(kname, in.Kernel, QEMULinuxLoad{Cmdline: in.Cmdline, Initrd: in.Initrd != nil, InitrdSize: int64(len(in.Initrd)), BelowFourG: below}, AlgSHA384)
	if err != nil {
		return fmt.Errorf("TDX RTMR1: %w", err)
	}
	r.StubMeasures = kernelStubMeasures(in)

	rtmr0, basis0, err := r.rtmr0Events(name, in)
	if err != nil {
		return err
	}
	ev := append(rtmr0, rtmr1Events(kd)...)
	if r.StubMeasures {
		ev = append(ev, rtmr2Events(in.Cmdline, in.Initrd, in.Initrd != nil)...)
	} else {
		r.Notes = append(r.Notes, fmt.Sprintf("%s: EFI stub older than Linux %d.%d measures nothing into RTMR2 (no TCG2 protocol in a TD): RTMR2 is zero and does not cover the command line or initrd", kname, MinCCStubKernel[0], MinCCStubKernel[1]))
	}
	r.Events = ev
	r.RTMR = extendAll(ev)
	r.Basis = [NumRTMRs]RTMRBasis{basis0, RTMRPredicted, RTMRPredicted, RTMRPredicted}
	if basis0 == RTMRNotPinned {
		r.RTMR[0] = [RTMRSize]byte{}
	}
	return nil
}

// rtmr0Events returns the RTMR0 events: from the profile (checking the CFV
// event against the firmware) or, without one, only the firmware-derived
// events for the log, and the register as not pinned.
func (r *TDXResult) rtmr0Events(name string, in TDXInputs) ([]CCEvent, RTMRBasis, error) {
	cfv, hasCFV, err := CFVEvent(in.Firmware, r.Metadata)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", name, err)
	}
	if in.Profile == nil {
		r.Notes = append(r.Notes, "RTMR0 not pinned: it covers the TD HOB, QEMU's ACPI tables and boot variables, which depend on the QEMU version and machine; give the shape a captured CC event log as profile")
		if hasCFV {
			return []CCEvent{cfv}, RTMRNotPinned, nil
		}
		return nil, RTMRNotPinned, nil
	}
	var ev []CCEvent
	sawCFV := false
	for i, e := range in.Profile.Events {
		if e.Type == EvNoAction || e.PCR != CCMRIndexRTMR0 {
			continue
		}
		d := e.Digest(AlgSHA384)
		if len(d) != RTMRSize {
			return nil, "", fmt.Errorf("profile %s: event %d: no sha384 digest", in.ProfileName, i+1)
		}
		c := CCEvent{MRIndex: e.PCR, Type: e.Type, Digest: [RTMRSize]byte(d), Data: bytes.Clone(e.Data), Description: describeCCEvent(e), Basis: RTMRProfile}
		// The CFV is the one firmware blob SEC measures into RTMR0 (its
		// description is "CFV" or "Fv(<guid>)" depending on the edk2
		// version; only the digest matters).
		if hasCFV && !sawCFV && e.Type == EvEFIPlatformFirmwareBlob2 {
			sawCFV = true
			if c.Digest != cfv.Digest {
				return nil, "", fmt.Errorf("profile %s: event %d (CFV) has digest %x, %s's VARS give %x: the profile was captured with other firmware", in.ProfileName, i+1, c.Digest, name, cfv.Digest)
			}
			c.Basis = RTMRPredicted
		}
		ev = append(ev, c)
	}
	if len(ev) == 0 {
		return nil, "", fmt.Errorf("profile %s: no RTMR0 events", in.ProfileName)
	}
	if hasCFV && !sawCFV {
		r.Notes = append(r.Notes, fmt.Sprintf("profile %s has no CFV event to check against the firmware", in.ProfileName))
	}
	r.Notes = append(r.Notes, fmt.Sprintf("RTMR0 rests on profile %s (captured TD HOB, ACPI tables and boot variables); it holds only for the memory size, vCPU count, QEMU version and machine it was captured with", in.ProfileName))
	return ev, RTMRProfile, nil
}

var kernelVersionRE = regexp.MustCompile(`^(\d+)\.(\d+)`)

// kernelStubMeasures applies the override or reads the kernel version from
// the bzImage header (boot protocol kernel_version field at 0x20e points
// to a NUL-terminated string, offset by 0x200).
func kernelStubMeasures(in TDXInputs) bool {
	if in.StubMeasures != nil {
		return *in.StubMeasures
	}
	major, minor, err := BzImageVersion(in.Kernel)
	if err != nil {
		return false
	}
	return major > MinCCStubKernel[0] || (major == MinCCStubKernel[0] && minor >= MinCCStubKernel[1])
}

// BzImageVersion returns major and minor of the kernel version string of a
// bzImage (Linux boot protocol >= 2.00, header field kernel_version).
func BzImageVersion(k []byte) (int, int, error) {
	const kernelVersionOff = 0x20e
	if len(k) < kernelVersionOff+2 || !bytes.Equal(k[bootHeaderMagic:bootHeaderMagic+4], []byte("HdrS")) {
		return 0, 0, errors.New("not a bzImage")
	}
	p := int(binary.LittleEndian.Uint16(k[kernelVersionOff:])) + 0x200
	if p >= len(k) {
		return 0, 0, fmt.Errorf("kernel_version pointer 0x%x past the end", p)
	}
	m := kernelVersionRE.FindSubmatch(k[p:min(len(k), p+64)])
	if m == nil {
		return 0, 0, fmt.Errorf("no version at 0x%x", p)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	return major, minor, nil
}

// EventLog returns the predicted events as a CC event log (SHA-384 bank).
func (r *TDXResult) EventLog() *EventLog {
	l := &EventLog{SpecID: NewSpecID(AlgSHA384)}
	for _, e := range r.Events {
		l.Events = append(l.Events, Event{PCR: e.MRIndex, Type: e.Type, Digests: []Digest{{AlgSHA384, bytes.Clone(e.Digest[:])}}, Data: bytes.Clone(e.Data)})
	}
	return l
}
