package ovmf

import "bytes"

// Whether a TDX firmware measures the boot into RTMRs.
//
// OVMF extends RTMRs only when it is built with its CC measurement driver,
// TdTcg2Dxe (edk2 OvmfPkg/IntelTdx/TdTcg2Dxe, later OvmfPkg/Tcg/TdTcg2Dxe;
// in OvmfPkgX64 since edk2-stable202302 behind CC_MEASUREMENT_ENABLE, on by
// default since edk2-stable202408). Without it nothing extends RTMR0-3 and
// there is no CC event log. The driver is an FFS file of the DXE firmware
// volume (UEFI PI Specification 1.8, volume 3, section 2.2.3
// EFI_FFS_FILE_HEADER: Name, IntegrityCheck, Type, ...).

// TdTcg2DxeFileGUID is FILE_GUID of TdTcg2Dxe.inf.
var TdTcg2DxeFileGUID = MustParseGUID("f062221e-c607-44c2-b0b4-c3886331d351")

const (
	// FVFileTypeDriver is EFI_FV_FILETYPE_DRIVER (PI volume 3, 2.1.4.1).
	FVFileTypeDriver = 0x07
	ffsTypeOffset    = SizeofGUID + 2 // after Name and IntegrityCheck
	ffsAlignment     = 8              // FFS files are 8-byte aligned in a volume
)

// HasFFSFile reports whether the (decompressed) firmware volume vol holds
// an FFS file header named g of type typ.
func HasFFSFile(vol []byte, g GUID, typ byte) bool {
	for off := 0; ; {
		i := bytes.Index(vol[off:], g[:])
		if i < 0 {
			return false
		}
		pos := off + i
		if pos%ffsAlignment == 0 && pos+ffsTypeOffset < len(vol) && vol[pos+ffsTypeOffset] == typ {
			return true
		}
		off = pos + 1
	}
}
