package measure

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/mkcvm/mkcvm/ovmf"
)

// Direct-boot PCR prediction for QEMU + OVMF (-kernel/-initrd/-append).
//
// The expected event sequence is the one edk2-stable202211 OVMF (Tcg2Pei,
// Tcg2Dxe, DxeTpm2MeasureBootLib, OvmfPkg/Library/PlatformBootManagerLib),
// QEMU 7.2 and the Linux 6.1 EFI stub produce, per TCG PFP section 3.3.4
// (PCR usage) and 10.4 (event data):
//
//	PCR0 EV_S_CRTM_VERSION                  firmware version string (UCS-2)
//	PCR0 EV_EFI_PLATFORM_FIRMWARE_BLOB      PEIFV (hashed after PEI: profile)
//	PCR0 EV_EFI_PLATFORM_FIRMWARE_BLOB      DXEFV (decompressed from CODE)
//	PCR7 EV_EFI_VARIABLE_DRIVER_CONFIG x5   SecureBoot, PK, KEK, db, dbx
//	PCR7 EV_SEPARATOR
//	PCR4 EV_EFI_BOOT_SERVICES_APPLICATION   the QEMU-patched kernel (PE hash)
//	PCR1 EV_EFI_VARIABLE_BOOT x2            BootOrder, Boot0000 (UiApp)
//	PCR4 EV_EFI_ACTION                      "Calling EFI Application from Boot Option"
//	PCR0..6 EV_SEPARATOR
//	PCR9 EV_EVENT_TAG                       LoadOptions (Linux EFI stub)
//	PCR9 EV_EVENT_TAG                       initrd bytes (Linux EFI stub, LoadFile2)
//	PCR5 EV_EFI_ACTION x2                   ExitBootServices invoked / returned
//
// In direct boot the kernel is measured before the boot variables and the
// boot-option action: OVMF's PlatformBootManagerAfterConsole
// (TryRunningQemuKernel) loads the kernel (LoadImage measures it), then
// signals ReadyToBoot, on which Tcg2Dxe measures BootOrder/Boot####, the
// "Calling EFI Application from Boot Option" action and the PCR 0-6
// separators, and then starts the kernel.

// Source says where a predicted event's digests come from.
type Source string

// Event sources.
const (
	SourceInputs  Source = "inputs"  // computed from firmware, VARS, kernel, initrd, cmdline, shape
	SourceProfile Source = "profile" // copied from a captured platform profile
	SourceUnknown Source = "unknown" // depends on the shape and no profile was given
)

// PredictedEvent is one expected event with its provenance.
type PredictedEvent struct {
	Event
	Source Source
	// DependsOn names the inputs the digest depends on, in words.
	DependsOn []string
	// Description says what the event measures.
	Description string
}

// OVMF build constants (edk2-stable202211 OvmfPkg/OvmfPkgX64.fdf, MEMFD
// region at 0x800000: PEIFV at +0x20000, DXEFV at +0x100000).
const (
	OVMFPeiMemFvBase = 0x820000
	OVMFDxeMemFvBase = 0x900000
)

var (
	// qemuKernelLoaderFsMedia is gQemuKernelLoaderFsMediaGuid
	// (OvmfPkg/OvmfPkg.dec), the vendor media node of the kernel's device path.
	qemuKernelLoaderFsMedia = ovmf.MustParseGUID("1428f772-b64a-441e-b8c3-9ebdd7f893c7")
	// uiAppFile is the FFS file name of MdeModulePkg/Application/UiApp.
	uiAppFile = ovmf.MustParseGUID("462caa21-7614-4503-836e-8ab6f4662331")
)

// OVMFFirmware is what the predictor needs from an OVMF CODE image. Compute
// it once per firmware with AnalyzeOVMF (it decompresses the main volume).
type OVMFFirmware struct {
	CodeSHA256 [32]byte
	PEIFVSize  uint64
	DXEFVSize  uint64
	// DXEFV digests per bank.
	DXEFV map[HashAlg][]byte
	// DXEFVName is the DXEFV's FvName (its extended header), the volume
	// node of the UiApp boot option.
	DXEFVName ovmf.GUID
	HasUiApp  bool
	// VersionString is PcdFirmwareVersionString, measured as the S-CRTM
	// version; empty in Debian's and upstream's OVMF builds.
	VersionString string
}

// AnalyzeOVMF extracts the measured firmware volumes of an OVMF CODE image.
func AnalyzeOVMF(input string, code []byte) (*OVMFFirmware, error) {
	v, err := ExtractOVMFVolumes(input, code)
	if err != nil {
		return nil, err
	}
	fw := &OVMFFirmware{CodeSHA256: sha256.Sum256(code), PEIFVSize: uint64(len(v.PEIFV)),
		DXEFVSize: uint64(len(v.DXEFV)), DXEFV: map[HashAlg][]byte{}}
	for _, a := range hashAlgs {
		fw.DXEFV[a.alg] = a.alg.Sum(v.DXEFV)
	}
	// EFI_FIRMWARE_VOLUME_HEADER.ExtHeaderOffset (offset 52) points at
	// EFI_FIRMWARE_VOLUME_EXT_HEADER, whose first field is FvName.
	if len(v.DXEFV) > 54 {
		if ext := int(binary.LittleEndian.Uint16(v.DXEFV[52:])); ext != 0 && ext+16 <= len(v.DXEFV) {
			fw.DXEFVName = ovmf.GUID(v.DXEFV[ext : ext+16])
		}
	}
	fw.HasUiApp = bytes.Contains(v.DXEFV, uiAppFile[:])
	return fw, nil
}

// DirectBoot are the inputs of a QEMU + OVMF direct kernel boot.
type DirectBoot struct {
	Firmware *OVMFFirmware
	Vars     []byte // VARS template (copied fresh for each boot)
	Kernel   []byte
	Initrd   []byte // nil: no -initrd
	Cmdline  string
	// Machine, MemoryMiB and VCPUs describe the shape (-machine, -m, -smp).
	Machine   string
	MemoryMiB int
	VCPUs     int
	// Profile is a captured platform profile for this shape, or nil.
	Profile *Profile
	// Algs are the banks of the predicted log; nil means the profile's, or
	// swtpm's default set (sha1, sha256, sha384, sha512).
	Algs []HashAlg
}

// Prediction is the predicted event log and PCRs of a boot.
type Prediction struct {
	Algs   []HashAlg
	Events []PredictedEvent
	// PCRs holds the predicted value of each pinned PCR per bank.
	PCRs map[HashAlg]map[uint32][]byte
	// Basis maps PCR index to "predicted", "profile" or "not-pinned".
	Basis map[uint32]string
	// Why explains the basis of each PCR in words.
	Why map[uint32]string

	// in are the inputs, kept so Explain can test alternative explanations
	// of a differing event (nil for a prediction read from a manifest).
	in *DirectBoot
}

// Basis values (manifest.TPMValues.Basis).
const (
	BasisPredicted = "predicted"
	BasisProfile   = "profile"
	BasisNotPinned = "not-pinned"
)

// ErrProfileMismatch means the given profile was captured for another shape
// or firmware.
var ErrProfileMismatch = errors.New("platform profile does not match")

// PredictDirectBoot predicts the event log and PCRs 0-10 of a direct boot.
func PredictDirectBoot(in *DirectBoot) (*Prediction, error) {
	if in.Firmware == nil {
		return nil, errors.New("predict: no OVMF firmware")
	}
	if err := checkProfile(in); err != nil {
		return nil, err
	}
	p := &Prediction{Algs: predictionAlgs(in.Algs, in.Profile), in: in}
	steps := []func(*DirectBoot, *Prediction) error{
		predictPCR0Firmware, predictPCR7, predictKernel, predictBootVars, predictSeparators,
		predictLinuxStub, predictExitBootServices,
	}
	for _, f := range steps {
		if err := f(in, p); err != nil {
			return nil, err
		}
	}
	p.finish(in)
	return p, nil
}

func checkProfile(in *DirectBoot) error {
	pr := in.Profile
	if pr == nil {
		return nil
	}
	var errs []error
	if pr.OVMFCodeSHA256 != hex.EncodeToString(in.Firmware.CodeSHA256[:]) {
		errs = append(errs, fmt.Errorf("%w: OVMF CODE sha256 %s, profile captured with %s", ErrProfileMismatch, hex.EncodeToString(in.Firmware.CodeSHA256[:]), pr.OVMFCodeSHA256))
	}
	if pr.Machine != in.Machine {
		errs = append(errs, fmt.Errorf("%w: machine %q, profile captured on %q", ErrProfileMismatch, in.Machine, pr.Machine))
	}
	if pr.MemoryMiB != in.MemoryMiB {
		errs = append(errs, fmt.Errorf("%w: memory %d MiB, profile captured with %d MiB", ErrProfileMismatch, in.MemoryMiB, pr.MemoryMiB))
	}
	if pr.VCPUs != in.VCPUs {
		errs = append(errs, fmt.Errorf("%w: %d vCPUs, profile captured with %d", ErrProfileMismatch, in.VCPUs, pr.VCPUs))
	}
	return errors.Join(errs...)
}

func (p *Prediction) add(pcr uint32, typ EventType, data, measured []byte, desc string, deps ...string) {
	p.Events = append(p.Events, PredictedEvent{Event: NewEvent(pcr, typ, data, measured, p.Algs),
		Source: SourceInputs, DependsOn: deps, Description: desc})
}

// firmwareBlob encodes UEFI_PLATFORM_FIRMWARE_BLOB (PFP section 10.4.6.1):
// BlobBase and BlobLength, UINT64 each.
func firmwareBlob(base, length uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, base)
	return binary.LittleEndian.AppendUint64(b, length)
}

func predictPCR0Firmware(in *DirectBoot, p *Prediction) error {
	fw := in.Firmware
	ver := append(ucs2(fw.VersionString), 0, 0)
	p.add(0, EvSCRTMVersion, ver, ver, fmt.Sprintf("S-CRTM version string %q (UCS-2)", fw.VersionString), "firmware build")

	pei := PredictedEvent{Event: Event{PCR: 0, Type: EvEFIPlatformFirmwareBlob, Data: firmwareBlob(OVMFPeiMemFvBase, fw.PEIFVSize)},
		Source: SourceUnknown, DependsOn: []string{"firmware build", "VM shape (memory, vCPUs, machine)"},
		Description: fmt.Sprintf("PEI firmware volume at 0x%x (0x%x bytes), hashed after PEI ran in it", uint64(OVMFPeiMemFvBase), fw.PEIFVSize)}
	if in.Profile != nil {
		e, err := profileEvent(in.Profile, p.Algs, func(e *Event) bool {
			return e.PCR == 0 && e.Type == EvEFIPlatformFirmwareBlob && bytes.Equal(e.Data, pei.Data)
		})
		if err != nil {
			return fmt.Errorf("PEI firmware volume event: %w", err)
		}
		pei.Event, pei.Source = e, SourceProfile
	}
	p.Events = append(p.Events, pei)

	dxe := firmwareBlob(OVMFDxeMemFvBase, fw.DXEFVSize)
	e := Event{PCR: 0, Type: EvEFIPlatformFirmwareBlob, Data: dxe}
	for _, a := range p.Algs {
		e.Digests = append(e.Digests, Digest{a, fw.DXEFV[a]})
	}
	p.Events = append(p.Events, PredictedEvent{Event: e, Source: SourceInputs, DependsOn: []string{"firmware build"},
		Description: fmt.Sprintf("DXE firmware volume at 0x%x (0x%x bytes), decompressed from FVMAIN_COMPACT", uint64(OVMFDxeMemFvBase), fw.DXEFVSize)})
	return nil
}

// profileEvent returns the profile's event matching want, with digests in
// algs order.
func profileEvent(pr *Profile, algs []HashAlg, want func(*Event) bool) (Event, error) {
	for _, e := range pr.Log().Events {
		if !want(&e) {
			continue
		}
		out := Event{PCR: e.PCR, Type: e.Type, Data: e.Data}
		for _, a := range algs {
			d := e.Digest(a)
			if d == nil {
				return out, fmt.Errorf("profile has no %s digest", a)
			}
			out.Digests = append(out.Digests, Digest{a, d})
		}
		return out, nil
	}
	return Event{}, fmt.Errorf("%w: profile log has no such event", ErrProfileMismatch)
}

func predictPCR7(in *DirectBoot, p *Prediction) error {
	vars, err := ParseVarStore("VARS template", in.Vars)
	if err != nil {
		return err
	}
	pk, hasPK := lookupVar(vars, EFIGlobalVariable, "PK")
	sb := byte(0)
	if hasPK && len(pk) > 0 {
		sb = 1
	}
	add := func(vendor ovmf.GUID, name string, data []byte) {
		d := UEFIVariableData(vendor, name, data)
		p.add(7, EvEFIVariableDriverConfig, d, d, fmt.Sprintf("Secure Boot variable %s (%d bytes)", name, len(data)), "VARS template")
	}
	add(EFIGlobalVariable, "SecureBoot", []byte{sb})
	for _, v := range []struct {
		vendor ovmf.GUID
		name   string
	}{{EFIGlobalVariable, "PK"}, {EFIGlobalVariable, "KEK"}, {EFIImageSecurityDatabase, "db"}, {EFIImageSecurityDatabase, "dbx"}} {
		d, _ := lookupVar(vars, v.vendor, v.name)
		add(v.vendor, v.name, d)
	}
	sep := []byte{0, 0, 0, 0}
	p.add(7, EvSeparator, sep, sep, "separator (end of Secure Boot policy)", "firmware build")
	return nil
}

// KernelLoadEvent encodes UEFI_IMAGE_LOAD_EVENT (PFP section 10.4.3) for the
// kernel OVMF loads from QEMU's kernel loader file system: the image
// location and length, link-time address 0 and the device path
// VenMedia(gQemuKernelLoaderFsMediaGuid)/File(L"kernel")/End.
func KernelLoadEvent(location, length uint64) []byte {
	var dp []byte
	dp = append(dp, 0x04, 0x03, 20, 0) // MEDIA_DEVICE_PATH, MEDIA_VENDOR_DP, length 20
	dp = append(dp, qemuKernelLoaderFsMedia[:]...)
	name := append(ucs2("kernel"), 0, 0)
	dp = append(dp, 0x04, 0x04, byte(4+len(name)), 0) // MEDIA_FILEPATH_DP
	dp = append(dp, name...)
	dp = append(dp, 0x7f, 0xff, 4, 0) // END_DEVICE_PATH
	b := binary.LittleEndian.AppendUint64(nil, location)
	b = binary.LittleEndian.AppendUint64(b, length)
	b = binary.LittleEndian.AppendUint64(b, 0)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(dp)))
	return append(b, dp...)
}

func predictKernel(in *DirectBoot, p *Prediction) error {
	below, err := QEMUBelow4G(in.Machine, in.MemoryMiB)
	if err != nil {
		return err
	}
	load := QEMULinuxLoad{Cmdline: in.Cmdline, Initrd: in.Initrd != nil, InitrdSize: int64(len(in.Initrd)), BelowFourG: below}
	img, err := QEMUPatchKernel("kernel", in.Kernel, load)
	if err != nil {
		return err
	}
	var loc uint64
	if in.Profile != nil {
		if e, err := profileEvent(in.Profile, p.Algs, func(e *Event) bool { return e.PCR == 4 && e.Type == EvEFIBootServicesApp }); err == nil && len(e.Data) >= 8 {
			loc = binary.LittleEndian.Uint64(e.Data)
		}
	}
	e := Event{PCR: 4, Type: EvEFIBootServicesApp, Data: KernelLoadEvent(loc, uint64(len(img)))}
	for _, a := range p.Algs {
		d, err := PEImageDigest("kernel", img, a, PadNone)
		if err != nil {
			return err
		}
		e.Digests = append(e.Digests, Digest{a, d})
	}
	p.Events = append(p.Events, PredictedEvent{Event: e, Source: SourceInputs,
		DependsOn:   []string{"kernel bytes", "initrd size", "memory below 4G (VM shape)", "cmdline (vga=)"},
		Description: fmt.Sprintf("kernel image (%d bytes, PE/Authenticode hash of the copy QEMU patched: setup header with initrd address/size and cmdline pointer)", len(img))})
	return nil
}

// BootOption encodes an EFI_LOAD_OPTION (UEFI 2.10 section 3.1.3).
func BootOption(attributes uint32, description string, devicePath []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, attributes)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(devicePath)))
	b = append(b, ucs2(description)...)
	b = append(b, 0, 0)
	return append(b, devicePath...)
}

func predictBootVars(in *DirectBoot, p *Prediction) error {
	if !in.Firmware.HasUiApp {
		return errors.New("predict: firmware has no UiApp: boot options not modelled")
	}
	// OVMF with no boot devices (-net none, no disks) registers only the
	// UiApp boot option: LOAD_OPTION_ACTIVE | LOAD_OPTION_HIDDEN |
	// LOAD_OPTION_CATEGORY_APP, device path Fv(DXEFV)/FvFile(UiApp)/End.
	var dp []byte
	dp = append(dp, 0x04, 0x07, 20, 0) // MEDIA_PIWG_FW_VOL_DP
	dp = append(dp, in.Firmware.DXEFVName[:]...)
	dp = append(dp, 0x04, 0x06, 20, 0) // MEDIA_PIWG_FW_FILE_DP
	dp = append(dp, uiAppFile[:]...)
	dp = append(dp, 0x7f, 0xff, 4, 0)
	boot0000 := BootOption(0x109, "UiApp", dp)
	order := []byte{0, 0}
	// EDK2 hashes only the variable data for EV_EFI_VARIABLE_BOOT (PFP
	// section 10.4.4 allows either; Tcg2Dxe MeasureVariable).
	deps := []string{"firmware build", "VM shape (boot devices)"}
	p.add(1, EvEFIVariableBoot, UEFIVariableData(EFIGlobalVariable, "BootOrder", order), order, "boot variable BootOrder (Boot0000)", deps...)
	p.add(1, EvEFIVariableBoot, UEFIVariableData(EFIGlobalVariable, "Boot0000", boot0000), boot0000, "boot variable Boot0000 (UiApp)", deps...)
	act := []byte("Calling EFI Application from Boot Option")
	p.add(4, EvEFIAction, act, act, fmt.Sprintf("EFI action %q", act), "firmware build")
	return nil
}

func predictSeparators(in *DirectBoot, p *Prediction) error {
	sep := []byte{0, 0, 0, 0}
	for pcr := range uint32(7) {
		p.add(pcr, EvSeparator, sep, sep, "separator (end of pre-OS measurements)", "firmware build")
	}
	return nil
}

// Linux EFI stub tagged events (Linux 6.1 drivers/firmware/efi/libstub,
// efi_measure_tagged_event): TCG_PCClientTaggedEvent (PFP section 10.4.2.1)
// with these IDs and descriptions, extended into PCR 9.
const (
	LinuxEventLoadOptions = 0x8f3b22ed
	LinuxEventInitrd      = 0x8f3b22ec
)

// TaggedEvent encodes TCG_PCClientTaggedEvent: taggedEventID,
// taggedEventDataSize and the data.
func TaggedEvent(id uint32, data []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, id)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// LoadOptions returns the LoadOptions OVMF gives the kernel in a direct
// boot: UCS-2 of the -append string, plus " initrd=initrd" when an initrd
// is given, NUL-terminated (OvmfPkg/Library/X86QemuLoadImageLib).
func LoadOptions(cmdline string, initrd bool) []byte {
	if initrd {
		cmdline += " initrd=initrd"
	}
	return append(ucs2(cmdline), 0, 0)
}

func predictLinuxStub(in *DirectBoot, p *Prediction) error {
	opts := LoadOptions(in.Cmdline, in.Initrd != nil)
	p.add(9, EvEventTag, TaggedEvent(LinuxEventLoadOptions, []byte("LOADED_IMAGE::LoadOptions\x00")), opts,
		fmt.Sprintf("kernel command line %q as UCS-2 LoadOptions (Linux EFI stub)", strings.TrimSuffix(ucs2Decode(opts), "\x00")), "cmdline", "initrd present")
	if in.Initrd != nil {
		p.add(9, EvEventTag, TaggedEvent(LinuxEventInitrd, []byte("Linux initrd\x00")), in.Initrd,
			fmt.Sprintf("initrd (%d bytes, loaded through LoadFile2; Linux EFI stub)", len(in.Initrd)), "initrd bytes")
	}
	return nil
}

func predictExitBootServices(in *DirectBoot, p *Prediction) error {
	for _, s := range []string{"Exit Boot Services Invocation", "Exit Boot Services Returned with Success"} {
		p.add(5, EvEFIAction, []byte(s), []byte(s), fmt.Sprintf("EFI action %q", s), "firmware build")
	}
	return nil
}

// finish replays the known events and sets the PCR basis.
func (p *Prediction) finish(in *DirectBoot) {
	p.PCRs, p.Basis, p.Why = map[HashAlg]map[uint32][]byte{}, map[uint32]string{}, map[uint32]string{}
	unknown := map[uint32]bool{}
	fromProfile := map[uint32]bool{}
	for _, e := range p.Events {
		switch e.Source {
		case SourceUnknown:
			unknown[e.PCR] = true
		case SourceProfile:
			fromProfile[e.PCR] = true
		}
	}
	for pcr := range uint32(10) {
		switch {
		case unknown[pcr]:
			p.Basis[pcr] = BasisNotPinned
			p.Why[pcr] = "the PEI firmware volume is hashed after PEI ran in it, so it depends on memory, vCPUs and machine type; give a captured platform profile (mkcvm capture)"
		case fromProfile[pcr]:
			p.Basis[pcr] = BasisProfile
			p.Why[pcr] = "PEI firmware volume digest from the captured platform profile; the other events computed from the inputs"
		default:
			p.Basis[pcr] = BasisPredicted
			p.Why[pcr] = pcrWhy[pcr]
		}
	}
	log := &EventLog{SpecID: NewSpecID(p.Algs...)}
	for _, e := range p.Events {
		if e.Source != SourceUnknown {
			log.Events = append(log.Events, e.Event)
		}
	}
	for _, a := range p.Algs {
		vals := map[uint32][]byte{}
		for pcr := range uint32(10) {
			if p.Basis[pcr] != BasisNotPinned {
				v, _ := log.ReplayPCR(a, pcr)
				vals[pcr] = v
			}
		}
		p.PCRs[a] = vals
	}
	if p.Basis[0] == BasisNotPinned {
		p.Basis[10], p.Why[10] = BasisNotPinned, "IMA's boot_aggregate covers PCRs 0-9, and PCR 0 is not pinned"
		return
	}
	if in != nil && (strings.Contains(in.Cmdline, "ima_policy=") || strings.Contains(in.Cmdline, "ima_template")) {
		p.Basis[10], p.Why[10] = BasisNotPinned, "the command line sets an IMA policy or template: PCR 10 then measures files the guest opens"
		return
	}
	agg, err := IMABootAggregate(p.PCRs[AlgSHA256])
	if err != nil {
		p.Basis[10], p.Why[10] = BasisNotPinned, "IMA's boot_aggregate is computed over the sha256 bank, which the prediction does not carry"
		return
	}
	for _, a := range p.Algs {
		p.PCRs[a][10] = IMAPCR10(agg, a, DebianKernelHashes)
	}
	p.Basis[10] = p.Basis[0]
	p.Why[10] = "IMA boot_aggregate entry (ima-sig template, sha256 over PCRs 0-9 of the sha256 bank) of the Debian 6.1 kernel; sha384/sha512 banks get the zero-padded SHA-1 template digest because that kernel builds SHA-512 as a module"
}

var pcrWhy = map[uint32]string{
	1: "boot variables of OVMF with no boot devices (-net none, no disks): BootOrder and the UiApp Boot0000, then a separator",
	2: "separator only: no option ROMs (-net none)",
	3: "separator only",
	4: "kernel image (PE hash of the QEMU-patched setup header), boot-option action, separator",
	5: "separator and ExitBootServices actions; no GPT in a direct boot",
	6: "separator only",
	7: "Secure Boot variables from the VARS template, separator",
	8: "no events (no boot loader)",
	9: "Linux EFI stub: LoadOptions (cmdline) and initrd",
}

// Log returns the predicted event log. It fails when an event could not be
// predicted (PCR 0 without a profile).
func (p *Prediction) Log() (*EventLog, error) {
	log := &EventLog{SpecID: NewSpecID(p.Algs...)}
	for i, e := range p.Events {
		if e.Source == SourceUnknown {
			return nil, fmt.Errorf("predicted event %d (PCR%d %s, %s) needs a captured platform profile", i+1, e.PCR, e.Type, e.Description)
		}
		log.Events = append(log.Events, e.Event)
	}
	return log, nil
}

// PinnedPCRs returns the pinned PCR indices in order.
func (p *Prediction) PinnedPCRs() []uint32 {
	var out []uint32
	for pcr := range uint32(24) {
		if b, ok := p.Basis[pcr]; ok && b != BasisNotPinned {
			out = append(out, pcr)
		}
	}
	return out
}

// NotPinnedPCRs returns the PCR indices the prediction leaves open.
func (p *Prediction) NotPinnedPCRs() []uint32 {
	var out []uint32
	for pcr := range uint32(24) {
		if p.Basis[pcr] == BasisNotPinned {
			out = append(out, pcr)
		}
	}
	return out
}

func decodeHexString(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0x"))
	if err != nil {
		return nil, fmt.Errorf("hex value %q: %w", s, err)
	}
	return b, nil
}

// predictionAlgs picks the banks to predict: those asked for, else the
// captured profile's log banks, else the four banks swtpm allocates.
func predictionAlgs(algs []HashAlg, profile *Profile) []HashAlg {
	if len(algs) == 0 && profile != nil {
		algs = profile.Log().Algs()
	}
	if len(algs) == 0 {
		algs = []HashAlg{AlgSHA1, AlgSHA256, AlgSHA384, AlgSHA512}
	}
	return algs
}
