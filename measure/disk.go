package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mkcvm/mkcvm/ovmf"
)

// Disk-boot PCR prediction: QEMU + OVMF booting a GPT disk whose EFI
// system partition holds a unified kernel image (systemd 252 stub) at the
// removable-media path, optionally under Secure Boot.
//
// The expected sequence, as edk2-stable202211 OVMF (Tcg2Dxe,
// DxeTpm2MeasureBootLib, DxeImageVerificationLib, PlatformBootManagerLib),
// the systemd 252 stub and the Linux 6.1 EFI stub produce it (TCG PFP
// §3.3.4 PCR usage, §10.4 event data):
//
//	PCR0 firmware events                     as for direct boot (PredictDirectBoot)
//	PCR7 EV_EFI_VARIABLE_DRIVER_CONFIG x5    SecureBoot, PK, KEK, db, dbx
//	PCR7 EV_SEPARATOR
//	PCR1 EV_EFI_VARIABLE_BOOT                BootOrder, then Boot#### in BootOrder order
//	PCR4 EV_EFI_ACTION                       "Calling EFI Application from Boot Option"
//	PCR0..6 EV_SEPARATOR
//	PCR7 EV_EFI_VARIABLE_AUTHORITY           db entry that verified the UKI (Secure Boot only)
//	PCR5 EV_EFI_GPT_EVENT                    primary GPT header and used entries
//	PCR4 EV_EFI_BOOT_SERVICES_APPLICATION    the UKI (Authenticode hash, no padding)
//	PCR11 EV_IPL x2 per section              systemd stub: section name, then payload
//	PCR4 EV_EFI_BOOT_SERVICES_APPLICATION    the kernel (.linux), only with Secure Boot off
//	PCR9 EV_EVENT_TAG                        LoadOptions and initrd (Linux EFI stub)
//	PCR5 EV_EFI_ACTION x2                    ExitBootServices invoked / returned
//
// PCRs 12 and 13 stay zero: the stub measures a command line into PCR 12
// only when it takes it from the load options (the embedded .cmdline wins
// under Secure Boot, and OVMF passes no load options for auto-created boot
// options), and credentials (PCR 12) and system extensions (PCR 13) only
// when the ESP has them, which a mkcvm disk does not.

// UKISection is one PE section of a UKI: its name and payload (VirtualSize
// bytes).
type UKISection struct {
	Name string
	Data []byte
}

// SystemdStubMeasuredSections lists, in measurement order, the sections
// the systemd 252 stub measures into PCR 11 (src/fundamental/tpm-pcr.h
// unified_sections[] at v252, without .pcrsig). systemd-measure(1) of the
// same release documents the same order.
var SystemdStubMeasuredSections = []string{".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"}

// PCIAddress is a PCI device/function on the root bus.
type PCIAddress struct{ Device, Function uint8 }

// DiskBoot are the inputs of a disk boot.
type DiskBoot struct {
	Firmware *OVMFFirmware
	// Vars is the VARS image the VM starts from (with enrolled keys).
	Vars []byte
	// Disk holds at least the first 34 sectors of the disk (GPT).
	Disk []byte
	// UKI is EFI/BOOT/BOOTX64.EFI as stored on the ESP; Sections are its
	// sections in any order (only the measured ones matter).
	UKI      []byte
	Sections []UKISection
	// Authority is the EFI_SIGNATURE_DATA (owner GUID and certificate) of
	// the db entry that verifies the UKI; nil when Secure Boot is off.
	Authority []byte
	// DiskPCI is where the virtio-blk disk sits (QEMU -device
	// virtio-blk-pci,addr=...); the disk must be the only bootable device
	// and carry bootindex, so OVMF orders it first.
	DiskPCI PCIAddress
	// Shell says the firmware has the built-in UEFI Shell (OVMFHasShell),
	// which OVMF registers as a boot option.
	Shell bool
	// Machine, MemoryMiB, VCPUs and Profile as for DirectBoot.
	Machine   string
	MemoryMiB int
	VCPUs     int
	Profile   *Profile
	Algs      []HashAlg
}

var (
	// shellFile is the FFS file name of ShellPkg's UEFI Shell in OVMF.
	shellFile = ovmf.MustParseGUID("7c04a583-9e3e-4f1c-ad65-e05268d0b4d1")
	// autoCreateBootOption is the OptionalData edk2's BDS puts in boot
	// options it creates by enumeration (gEfiBootManagerAutoCreateBootOptionGuid
	// ... 8108ac4e-9f11-4d59-850e-e21a522c59b2).
	autoCreateBootOption = ovmf.MustParseGUID("8108ac4e-9f11-4d59-850e-e21a522c59b2")
)

// OVMFHasShell reports whether an OVMF CODE image carries ShellPkg's UEFI
// Shell in its DXE volume.
func OVMFHasShell(input string, code []byte) (bool, error) {
	v, err := ExtractOVMFVolumes(input, code)
	if err != nil {
		return false, err
	}
	return bytes.Contains(v.DXEFV, shellFile[:]), nil
}

// PredictDiskBoot predicts the event log and PCRs 0-7, 9 and 11-13 of a
// disk boot.
func PredictDiskBoot(in *DiskBoot) (*Prediction, error) {
	if in.Firmware == nil {
		return nil, errors.New("predict disk boot: no OVMF firmware")
	}
	db := &DirectBoot{Firmware: in.Firmware, Vars: in.Vars, Machine: in.Machine, MemoryMiB: in.MemoryMiB, VCPUs: in.VCPUs, Profile: in.Profile, Algs: in.Algs}
	if err := checkProfile(db); err != nil {
		return nil, err
	}
	p := &Prediction{Algs: predictionAlgs(in.Algs, in.Profile)}
	gpt, err := ParseGPT("disk", in.Disk)
	if err != nil {
		return nil, err
	}
	if err := predictPCR0Firmware(db, p); err != nil {
		return nil, err
	}
	if err := predictPCR7(db, p); err != nil {
		return nil, err
	}
	if err := predictDiskBootVars(in, gpt, p); err != nil {
		return nil, err
	}
	if err := predictSeparators(db, p); err != nil {
		return nil, err
	}
	if err := predictUKILoad(in, gpt, p); err != nil {
		return nil, err
	}
	if err := predictStub(in, p); err != nil {
		return nil, err
	}
	if err := predictExitBootServices(db, p); err != nil {
		return nil, err
	}
	p.finishDisk()
	return p, nil
}

// diskDevicePath returns PciRoot(0x0)/Pci(dev,fn), the device path of the
// virtio-blk controller, without the end node.
func diskDevicePath(a PCIAddress) []byte {
	dp := []byte{0x02, 0x01, 12, 0}                       // ACPI_DEVICE_PATH, ACPI_DP
	dp = binary.LittleEndian.AppendUint32(dp, 0x0a0341d0) // EISA_PNP_ID(0x0A03): PCI root bridge
	dp = binary.LittleEndian.AppendUint32(dp, 0)          // UID 0
	return append(dp, 0x01, 0x01, 6, 0, a.Function, a.Device)
}

var endDevicePath = []byte{0x7f, 0xff, 4, 0}

func fvFileDevicePath(fv, file ovmf.GUID) []byte {
	dp := append([]byte{0x04, 0x07, 20, 0}, fv[:]...) // MEDIA_PIWG_FW_VOL_DP
	dp = append(dp, 0x04, 0x06, 20, 0)                // MEDIA_PIWG_FW_FILE_DP
	dp = append(dp, file[:]...)
	return append(dp, endDevicePath...)
}

// predictDiskBootVars models OVMF's boot options with one virtio-blk disk
// that has a bootindex: Boot0000 UiApp (registered first), Boot0001 the
// disk ("UEFI Misc Device", auto-created), Boot0002 the built-in UEFI Shell
// when the firmware has one; QEMU's boot order puts the disk first and the
// unmatched options follow in creation order.
func predictDiskBootVars(in *DiskBoot, gpt *GPT, p *Prediction) error {
	fw := in.Firmware
	if !fw.HasUiApp {
		return errors.New("predict disk boot: firmware has no UiApp: boot options not modelled")
	}
	type opt struct {
		num  uint16
		data []byte
		desc string
	}
	disk := append(BootOption(0x1, "UEFI Misc Device", append(diskDevicePath(in.DiskPCI), endDevicePath...)), autoCreateBootOption[:]...)
	opts := []opt{
		{1, disk, "the virtio-blk disk"},
		{0, BootOption(0x109, "UiApp", fvFileDevicePath(fw.DXEFVName, uiAppFile)), "UiApp"},
	}
	if in.Shell {
		opts = append(opts, opt{2, BootOption(0x1, "EFI Internal Shell", fvFileDevicePath(fw.DXEFVName, shellFile)), "UEFI Shell"})
	}
	var order []byte
	for _, o := range opts {
		order = binary.LittleEndian.AppendUint16(order, o.num)
	}
	deps := []string{"firmware build", "VM shape (boot devices, disk PCI address)"}
	p.add(1, EvEFIVariableBoot, UEFIVariableData(EFIGlobalVariable, "BootOrder", order), order, "boot variable BootOrder", deps...)
	for _, o := range opts {
		name := fmt.Sprintf("Boot%04X", o.num)
		p.add(1, EvEFIVariableBoot, UEFIVariableData(EFIGlobalVariable, name, o.data), o.data, fmt.Sprintf("boot variable %s (%s)", name, o.desc), deps...)
	}
	act := []byte("Calling EFI Application from Boot Option")
	p.add(4, EvEFIAction, act, act, fmt.Sprintf("EFI action %q", act), "firmware build")
	return nil
}

// ukiDevicePath is the device path OVMF loads the UKI from:
// PciRoot/Pci/HD(n,GPT,guid,start,size)/File(\EFI\BOOT\BOOTX64.EFI).
func ukiDevicePath(in *DiskBoot, gpt *GPT) []byte {
	dp := diskDevicePath(in.DiskPCI)
	if len(gpt.Partitions) > 0 {
		part := gpt.Partitions[0]
		dp = append(dp, 0x04, 0x01, 42, 0) // MEDIA_HARDDRIVE_DP
		dp = binary.LittleEndian.AppendUint32(dp, part.Number)
		dp = binary.LittleEndian.AppendUint64(dp, part.FirstLBA)
		dp = binary.LittleEndian.AppendUint64(dp, part.LastLBA-part.FirstLBA+1)
		dp = append(dp, part.UniqueGUID[:]...)
		dp = append(dp, 2, 2) // MBRType GPT, SignatureType GUID
	}
	name := append(ucs2(`\EFI\BOOT\BOOTX64.EFI`), 0, 0)
	dp = append(dp, 0x04, 0x04, byte(4+len(name)), 0) // MEDIA_FILEPATH_DP
	dp = append(dp, name...)
	return append(dp, endDevicePath...)
}

func predictUKILoad(in *DiskBoot, gpt *GPT, p *Prediction) error {
	switch sb := secureBootOn(in.Vars); {
	case sb && in.Authority == nil:
		return errors.New("predict disk boot: the VARS enrol a PK (Secure Boot on) but no db authority for the UKI was given")
	case !sb && in.Authority != nil:
		return errors.New("predict disk boot: a db authority was given but the VARS enrol no PK (Secure Boot off)")
	}
	if in.Authority != nil {
		d := UEFIVariableData(EFIImageSecurityDatabase, "db", in.Authority)
		p.add(7, EvEFIVariableAuthority, d, d, "Secure Boot authority: the db entry that verified the UKI", "db certificate", "signature owner GUID")
	}
	gd := gpt.EventData()
	p.add(5, EvEFIGPTEvent, gd, gd, fmt.Sprintf("GPT header and %d used partition entries", len(gpt.Partitions)), "disk GUID", "partition table")
	dp := ukiDevicePath(in, gpt)
	data := binary.LittleEndian.AppendUint64(nil, 0) // ImageLocationInMemory: run-time address, not predicted
	data = binary.LittleEndian.AppendUint64(data, uint64(len(in.UKI)))
	data = binary.LittleEndian.AppendUint64(data, 0)
	data = binary.LittleEndian.AppendUint64(data, uint64(len(dp)))
	data = append(data, dp...)
	e := Event{PCR: 4, Type: EvEFIBootServicesApp, Data: data}
	for _, a := range p.Algs {
		d, err := PEImageDigest("UKI", in.UKI, a, PadNone)
		if err != nil {
			return err
		}
		e.Digests = append(e.Digests, Digest{a, d})
	}
	p.Events = append(p.Events, PredictedEvent{Event: e, Source: SourceInputs, DependsOn: []string{"UKI bytes (stub, sections, signature)"},
		Description: fmt.Sprintf("UKI EFI/BOOT/BOOTX64.EFI (%d bytes, Authenticode hash)", len(in.UKI))})
	return nil
}

// stubKernelMedia is the vendor media node GUID of the device path the
// systemd 252 stub gives the kernel image it starts with LoadImage
// (src/boot/efi/linux.c at v252).
var stubKernelMedia = ovmf.MustParseGUID("55c5d1f8-04cd-46b5-8a20-e56cbb3052d0")

// secureBootOn says whether edk2 will run with Secure Boot enabled: a PK is
// enrolled (AuthVariableLib enters User Mode and, with no SecureBootEnable
// variable saying otherwise, enables Secure Boot).
func secureBootOn(vars []byte) bool {
	vs, err := ParseVarStore("VARS", vars)
	if err != nil {
		return false
	}
	pk, ok := lookupVar(vs, EFIGlobalVariable, "PK")
	return ok && len(pk) > 0
}

// kernelImageEvent is the PCR 4 event of the kernel when the systemd stub
// starts it through LoadImage, which it does when Secure Boot is off (with
// Secure Boot on, the 252 stub hands the kernel over without LoadImage and
// firmware measures nothing).
func kernelImageEvent(kernel []byte, p *Prediction) error {
	dp := append([]byte{0x04, 0x03, 20, 0}, stubKernelMedia[:]...) // MEDIA_VENDOR_DP
	dp = append(dp, endDevicePath...)
	data := binary.LittleEndian.AppendUint64(nil, 0) // run-time address, not predicted
	data = binary.LittleEndian.AppendUint64(data, uint64(len(kernel)))
	data = binary.LittleEndian.AppendUint64(data, 0)
	data = binary.LittleEndian.AppendUint64(data, uint64(len(dp)))
	data = append(data, dp...)
	e := Event{PCR: 4, Type: EvEFIBootServicesApp, Data: data}
	for _, a := range p.Algs {
		d, err := PEImageDigest(".linux", kernel, a, PadNone)
		if err != nil {
			return err
		}
		e.Digests = append(e.Digests, Digest{a, d})
	}
	p.Events = append(p.Events, PredictedEvent{Event: e, Source: SourceInputs, DependsOn: []string{"kernel bytes", "Secure Boot off"},
		Description: fmt.Sprintf("kernel from the UKI's .linux (%d bytes, Authenticode hash), started by the systemd stub with LoadImage", len(kernel))})
	return nil
}

// predictStub adds the systemd stub's PCR 11 events, the kernel's PCR 4
// event when Secure Boot is off, and the Linux EFI stub's PCR 9 events.
func predictStub(in *DiskBoot, p *Prediction) error {
	var cmdline, initrd, kernel []byte
	for _, s := range in.Sections {
		if s.Name == ".linux" {
			kernel = s.Data
		}
	}
	for _, name := range SystemdStubMeasuredSections {
		for _, s := range in.Sections {
			if s.Name != name {
				continue
			}
			label := append(ucs2(name), 0, 0)
			p.add(11, EvIPL, label, append([]byte(name), 0), fmt.Sprintf("UKI section name %q (systemd stub)", name), "UKI section layout")
			p.add(11, EvIPL, label, s.Data, fmt.Sprintf("UKI section %s payload (%d bytes)", name, len(s.Data)), "section "+name)
			switch name {
			case ".cmdline":
				cmdline = s.Data
			case ".initrd":
				initrd = s.Data
			}
		}
	}
	if kernel != nil && !secureBootOn(in.Vars) {
		if err := kernelImageEvent(kernel, p); err != nil {
			return err
		}
	}
	if cmdline != nil {
		opts := append(ucs2(string(cmdline)), 0, 0)
		p.add(9, EvEventTag, TaggedEvent(LinuxEventLoadOptions, []byte("LOADED_IMAGE::LoadOptions\x00")), opts,
			fmt.Sprintf("kernel command line %q as UCS-2 LoadOptions (Linux EFI stub)", strings.TrimRight(string(cmdline), "\x00")), ".cmdline")
	}
	if initrd != nil {
		p.add(9, EvEventTag, TaggedEvent(LinuxEventInitrd, []byte("Linux initrd\x00")), initrd,
			fmt.Sprintf("initrd (%d bytes, served by the systemd stub through LoadFile2; Linux EFI stub)", len(initrd)), ".initrd")
	}
	return nil
}

// DiskBootPCRs are the PCRs a disk-boot prediction covers.
var DiskBootPCRs = []uint32{0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 12, 13}

var diskPCRWhy = map[uint32]string{
	1:  "boot variables: BootOrder, the virtio-blk disk (auto-created), UiApp and the UEFI Shell; separator",
	2:  "separator only: no option ROMs",
	3:  "separator only",
	4:  "boot-option action, separator, the UKI's Authenticode hash; without Secure Boot also the kernel's (the stub starts it with LoadImage)",
	5:  "separator, GPT header and entries, ExitBootServices actions",
	6:  "separator only",
	7:  "Secure Boot variables from the enrolled VARS store, separator, the db authority that verified the UKI",
	9:  "Linux EFI stub: LoadOptions (the UKI's .cmdline) and the initrd",
	11: "systemd stub: name and payload of each UKI section (.linux, .osrel, .cmdline, .initrd)",
	12: "not extended: command line embedded, no credentials",
	13: "not extended: no system extensions",
}

func (p *Prediction) finishDisk() {
	p.PCRs, p.Basis, p.Why = map[HashAlg]map[uint32][]byte{}, map[uint32]string{}, map[uint32]string{}
	unknown, fromProfile := map[uint32]bool{}, map[uint32]bool{}
	log := &EventLog{SpecID: NewSpecID(p.Algs...)}
	for _, e := range p.Events {
		switch e.Source {
		case SourceUnknown:
			unknown[e.PCR] = true
			continue
		case SourceProfile:
			fromProfile[e.PCR] = true
		}
		log.Events = append(log.Events, e.Event)
	}
	for _, pcr := range DiskBootPCRs {
		switch {
		case unknown[pcr]:
			p.Basis[pcr] = BasisNotPinned
			p.Why[pcr] = "the PEI firmware volume is hashed after PEI ran in it, so it depends on memory, vCPUs and machine type; give a captured platform profile (mkcvm capture)"
		case fromProfile[pcr]:
			p.Basis[pcr], p.Why[pcr] = BasisProfile, "PEI firmware volume digest from the captured platform profile; the other events computed from the inputs"
		default:
			p.Basis[pcr], p.Why[pcr] = BasisPredicted, diskPCRWhy[pcr]
		}
	}
	for _, a := range p.Algs {
		vals := map[uint32][]byte{}
		for _, pcr := range DiskBootPCRs {
			if p.Basis[pcr] != BasisNotPinned {
				vals[pcr], _ = log.ReplayPCR(a, pcr)
			}
		}
		p.PCRs[a] = vals
	}
}
