package measure

import (
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/mkcvm/mkcvm/ovmf"
)

// Predicted CC event log entries of an OVMF TDX direct boot (QEMU -kernel).
//
// Sources (edk2 at the commit in testdata/provenance/tdx.md):
//   - OvmfPkg/IntelTdx/TdxHelperLib/SecTdxHelper.c: SEC measures the TD HOB
//     (EV_EFI_HANDOFF_TABLES2 "TdxTable") and the CFV
//     (EV_EFI_PLATFORM_FIRMWARE_BLOB2 "CFV", the VARS bytes of the image)
//     into RTMR0.
//   - OvmfPkg/Tcg/TdTcg2Dxe/TdTcg2Dxe.c: TdxMeasurementMapPcrToMrIndex maps
//     PCR 0 to MRTD, 1 and 7 to RTMR0, 2-6 to RTMR1, 8-15 to RTMR2;
//     OnReadyToBoot measures "Calling EFI Application from Boot Option" and a
//     separator into RTMR1; OnExitBootServices the two Exit Boot Services
//     actions (PCR 5, RTMR1).
//   - SecurityPkg DxeTpm2MeasureBootLib (CC path): LoadImage of the kernel
//     measures its PE/COFF Authenticode digest (EV_EFI_BOOT_SERVICES_APPLICATION,
//     PCR 4, RTMR1) before ReadyToBoot (OvmfPkg PlatformBootManagerLib
//     TryRunningQemuKernel loads, signals ReadyToBoot, then starts).
//   - OvmfPkg/Library/X86QemuLoadImageLib: LoadOptions are UTF-16
//     "initrd=initrd " (when an initrd is given) + the command line, NUL
//     terminated.
//   - Linux drivers/firmware/efi/libstub/efi-stub-helper.c (CC protocol
//     support since v6.9): the stub measures LoadOptions (PCR 12, tag
//     0x8F3B22ED "LOADED_IMAGE::LoadOptions") and then the initrd (PCR 9,
//     tag 0x8F3B22EC "Linux initrd") as EV_EVENT_TAG; both land in RTMR2.
const (
	CCMRIndexRTMR1 = 2
	CCMRIndexRTMR2 = 3

	// TCG PFP 10.4.4 EV_EFI_ACTION strings.
	ActionCallingEFIApplication = "Calling EFI Application from Boot Option"
	ActionExitBootServices      = "Exit Boot Services Invocation"
	ActionExitBootServicesOK    = "Exit Boot Services Returned with Success"

	// Linux EFI stub tagged event IDs (include/linux/efi.h in the stub).
	LinuxInitrdEventTagID      = 0x8F3B22EC
	LinuxLoadOptionsEventTagID = 0x8F3B22ED
)

// CCEvent is one predicted CC event log entry.
type CCEvent struct {
	MRIndex     uint32 // CC MR index: 1..4 = RTMR0..3
	Type        EventType
	Digest      [RTMRSize]byte // SHA-384 the firmware extends
	Data        []byte         // event data as logged; nil when it holds load addresses we cannot predict
	Description string
	// Basis is RTMRPredicted for events computed from the inputs, or
	// RTMRProfile for events copied from a captured profile log.
	Basis RTMRBasis
}

func sha384(b []byte) [RTMRSize]byte { return sha512.Sum384(b) }

// separatorEvent is EV_SEPARATOR with the 4-byte zero data TdTcg2Dxe logs.
func separatorEvent(mr uint32) CCEvent {
	d := []byte{0, 0, 0, 0}
	return CCEvent{MRIndex: mr, Type: EvSeparator, Digest: sha384(d), Data: d, Description: "separator", Basis: RTMRPredicted}
}

// actionEvent is EV_EFI_ACTION: the digest covers the string, which is
// also the event data (no NUL).
func actionEvent(mr uint32, s string) CCEvent {
	return CCEvent{MRIndex: mr, Type: EvEFIAction, Digest: sha384([]byte(s)), Data: []byte(s), Description: s, Basis: RTMRPredicted}
}

// taggedEvent is a Linux EFI stub EV_EVENT_TAG: TCG_PCClientTaggedEvent
// {taggedEventID, taggedEventDataSize, "<description>\0"} as data, the
// digest over the measured bytes.
func taggedEvent(mr uint32, id uint32, desc string, measured []byte) CCEvent {
	data := binary.LittleEndian.AppendUint32(nil, id)
	data = binary.LittleEndian.AppendUint32(data, uint32(len(desc)+1))
	data = append(append(data, desc...), 0)
	return CCEvent{MRIndex: mr, Type: EvEventTag, Digest: sha384(measured), Data: data, Description: desc, Basis: RTMRPredicted}
}

// QEMULoadOptions returns the UEFI LoadOptions OVMF gives a directly booted
// kernel: UTF-16LE of "initrd=initrd " (when an initrd is passed) and the
// command line, with a UTF-16 NUL.
func QEMULoadOptions(cmdline string, initrd bool) []byte {
	s := cmdline
	if initrd {
		s = "initrd=initrd " + cmdline
	}
	u := utf16.Encode([]rune(s))
	b := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		b = binary.LittleEndian.AppendUint16(b, c)
	}
	return append(b, 0, 0)
}

// CFVEvent returns the RTMR0 event for the configuration firmware volume:
// the SHA-384 of the CFV section's raw bytes in the flash image.
func CFVEvent(fw []byte, md *ovmf.TDXMetadata) (CCEvent, bool, error) {
	cfv, ok := md.Section(ovmf.TDXSectionCFV)
	if !ok {
		return CCEvent{}, false, nil
	}
	end := uint64(cfv.DataOffset) + uint64(cfv.RawDataSize)
	if end > uint64(len(fw)) {
		return CCEvent{}, false, fmt.Errorf("CFV raw data 0x%x..0x%x past the 0x%x-byte image", cfv.DataOffset, end, len(fw))
	}
	vol := fw[cfv.DataOffset:end]
	// UEFI_PLATFORM_FIRMWARE_BLOB2 as TdxMeasurementHob.c logs it:
	// BlobDescriptionSize (41), "Fv(<FvName>)" NUL-terminated, BlobBase,
	// BlobLength.
	desc := fvBlobDescription(vol)
	data := append([]byte{byte(len(desc) + 1)}, desc...)
	data = append(data, 0)
	data = binary.LittleEndian.AppendUint64(data, cfv.MemoryAddress)
	data = binary.LittleEndian.AppendUint64(data, uint64(cfv.RawDataSize))
	return CCEvent{MRIndex: CCMRIndexRTMR0, Type: EvEFIPlatformFirmwareBlob2, Digest: sha384(vol),
		Data: data, Description: "CFV " + desc + " (configuration firmware volume: the VARS of the image)", Basis: RTMRPredicted}, true, nil
}

// fvBlobDescription returns edk2's description of a firmware volume blob:
// "Fv(<FvName>)" when the volume has an extended header naming it, else
// the template "Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)"
// (OvmfPkg/IntelTdx/TdxHelperLib/TdxMeasurementHob.c, GetFvName; UEFI PI
// volume 3, 3.2.1 EFI_FIRMWARE_VOLUME_HEADER.ExtHeaderOffset at 0x34,
// 3.2.2 EFI_FIRMWARE_VOLUME_EXT_HEADER.FvName).
func fvBlobDescription(vol []byte) string {
	const (
		fvSignatureOff = 40
		fvExtHeaderOff = 52
		sizeofExtHdr   = 20 // FvName + ExtHeaderSize
	)
	desc := "Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)"
	if len(vol) < fvExtHeaderOff+2 || string(vol[fvSignatureOff:fvSignatureOff+4]) != "_FVH" {
		return desc
	}
	ext := int(binary.LittleEndian.Uint16(vol[fvExtHeaderOff:]))
	if ext == 0 || ext+sizeofExtHdr > len(vol) {
		return desc
	}
	return "Fv(" + strings.ToUpper(ovmf.GUID(vol[ext:ext+ovmf.SizeofGUID]).String()) + ")"
}

// rtmr1Events predicts RTMR1 of a direct boot: the kernel image as OVMF
// loads it (kernelDigest, SHA-384 Authenticode of the QEMU-patched
// kernel), the ReadyToBoot action and separator, the ExitBootServices
// actions.
func rtmr1Events(kernelDigest []byte) []CCEvent {
	return []CCEvent{
		{MRIndex: CCMRIndexRTMR1, Type: EvEFIBootServicesApp, Digest: [RTMRSize]byte(kernelDigest),
			Description: "kernel PE/COFF image (Authenticode SHA-384 of the setup header QEMU patched)", Basis: RTMRPredicted},
		actionEvent(CCMRIndexRTMR1, ActionCallingEFIApplication),
		separatorEvent(CCMRIndexRTMR1),
		actionEvent(CCMRIndexRTMR1, ActionExitBootServices),
		actionEvent(CCMRIndexRTMR1, ActionExitBootServicesOK),
	}
}

// rtmr2Events predicts RTMR2 as a CC-aware Linux EFI stub extends it: the
// LoadOptions, then the initrd (when given and non-empty).
func rtmr2Events(cmdline string, initrd []byte, hasInitrd bool) []CCEvent {
	var ev []CCEvent
	if lo := QEMULoadOptions(cmdline, hasInitrd); len(lo) > 0 {
		ev = append(ev, taggedEvent(CCMRIndexRTMR2, LinuxLoadOptionsEventTagID, "LOADED_IMAGE::LoadOptions", lo))
	}
	if hasInitrd && len(initrd) > 0 {
		ev = append(ev, taggedEvent(CCMRIndexRTMR2, LinuxInitrdEventTagID, "Linux initrd", initrd))
	}
	return ev
}

// extendAll replays events into RTMRs (by MR index).
func extendAll(ev []CCEvent) [NumRTMRs][RTMRSize]byte {
	var r [NumRTMRs][RTMRSize]byte
	for _, e := range ev {
		i := RTMRIndex(e.MRIndex)
		if i < 0 {
			continue
		}
		r[i] = [RTMRSize]byte(Extend(AlgSHA384, r[i][:], e.Digest[:]))
	}
	return r
}
