package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/ulikunitz/xz/lzma"
)

// OVMF firmware volumes.
//
// OVMF's CODE image starts with FVMAIN_COMPACT, a firmware volume (UEFI PI
// Specification 1.7, Volume 3, section 3.2.1 EFI_FIRMWARE_VOLUME_HEADER)
// holding one FFS file (section 2.2.3 EFI_FFS_FILE_HEADER) whose GUID-defined
// section (section 2.2.4, EFI_SECTION_GUID_DEFINED) is LZMA-compressed
// (edk2 MdeModulePkg LzmaCustomDecompressLib, GUID
// ee4e5898-3914-4259-9d6e-dc7bd79403cf, classic .lzma stream). Decompressed,
// it holds two EFI_SECTION_FIRMWARE_VOLUME_IMAGE sections: PEIFV and DXEFV.
// SEC copies them to PcdOvmfPeiMemFvBase and PcdOvmfDxeMemFvBase
// (OvmfPkg/Sec/SecMain.c DecompressMemFvs), and Tcg2Pei measures both into
// PCR 0 as EV_EFI_PLATFORM_FIRMWARE_BLOB. DXEFV is measured as decompressed;
// PEIFV is measured after PEI modules ran in place and wrote to it, so its
// digest depends on the VM shape and comes from a captured profile.

// Section and file constants (PI Specification Volume 3, sections 2.1.4.1,
// 2.2.3, 2.2.4, 3.2.1).
const (
	fvSignatureOffset       = 40 // "_FVH"
	fvHeaderLengthOffset    = 48
	fvLengthOffset          = 32
	sizeofFFSHeader         = 24
	sizeofFFSHeader2        = 32
	ffsAttribLargeFile      = 0x01
	sectionGUIDDefined      = 0x02
	sectionFVImage          = 0x17
	sizeofFFSSectionHeader  = 4
	sizeofFFSSectionHeader2 = 8
	sizeofGUIDDefinedHead   = 20 // SectionDefinitionGuid + DataOffset + Attributes
	ffsTypeFFSPad           = 0xf0
	// maxDecompressed bounds the LZMA output (OVMF's is ~13 MiB).
	maxDecompressed = 64 << 20
)

// lzmaCustomDecompressGUID is gLzmaCustomDecompressGuid (edk2
// MdeModulePkg/MdeModulePkg.dec).
var lzmaCustomDecompressGUID = ovmf.MustParseGUID("ee4e5898-3914-4259-9d6e-dc7bd79403cf")

// OVMFVolumes are the memory firmware volumes of an OVMF build.
type OVMFVolumes struct {
	PEIFV, DXEFV []byte // EFI_SECTION_FIRMWARE_VOLUME_IMAGE contents, in order
}

// ExtractOVMFVolumes decompresses FVMAIN_COMPACT of an OVMF CODE (or
// combined) image and returns PEIFV and DXEFV. input names the image in
// errors.
func ExtractOVMFVolumes(input string, code []byte) (*OVMFVolumes, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	// A combined OVMF.fd starts with the VARS volume; FVMAIN_COMPACT is the
	// first volume whose files hold the compressed section.
	for base := 0; base+fvHeaderLengthOffset+2 <= len(code); {
		if string(code[base+fvSignatureOffset:base+fvSignatureOffset+4]) != "_FVH" {
			return nil, fail(base+fvSignatureOffset, "EFI_FIRMWARE_VOLUME_HEADER.Signature", "%q, want \"_FVH\"", code[base+fvSignatureOffset:base+fvSignatureOffset+4])
		}
		fvLen := binary.LittleEndian.Uint64(code[base+fvLengthOffset:])
		if fvLen == 0 || fvLen > uint64(len(code)-base) {
			return nil, fail(base+fvLengthOffset, "EFI_FIRMWARE_VOLUME_HEADER.FvLength", "0x%x past the %d-byte image", fvLen, len(code))
		}
		fv := code[base : base+int(fvLen)]
		secs, err := fvSections(input, base, fv)
		if err != nil {
			return nil, err
		}
		if len(secs) >= 2 {
			return &OVMFVolumes{PEIFV: secs[0], DXEFV: secs[1]}, nil
		}
		base += int(fvLen)
	}
	return nil, fail(0, "FVMAIN_COMPACT", "no LZMA-compressed PEIFV/DXEFV found")
}

// fvSections walks the files of one volume and returns the FV image
// sections inside its LZMA GUID-defined sections.
func fvSections(input string, base int, fv []byte) ([][]byte, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(base + off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	off := int(binary.LittleEndian.Uint16(fv[fvHeaderLengthOffset:]))
	var out [][]byte
	for off+sizeofFFSHeader <= len(fv) {
		h := fv[off:]
		if allPadding(h[:sizeofFFSHeader]) && h[0] == 0xff {
			break
		}
		size, hdr := int(h[20])|int(h[21])<<8|int(h[22])<<16, sizeofFFSHeader
		if h[19]&ffsAttribLargeFile != 0 {
			if off+sizeofFFSHeader2 > len(fv) {
				return nil, fail(off, "EFI_FFS_FILE_HEADER2", "truncated")
			}
			size, hdr = int(binary.LittleEndian.Uint32(h[24:])), sizeofFFSHeader2
		}
		if size < hdr || size > len(fv)-off {
			return nil, fail(off+20, "EFI_FFS_FILE_HEADER.Size", "0x%x outside the volume", size)
		}
		if h[18] != ffsTypeFFSPad {
			s, err := walkSections(input, base+off+hdr, h[hdr:size], 0)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		off = (off + size + 7) &^ 7
	}
	return out, nil
}

// walkSections returns the FV image sections in b, decompressing LZMA
// GUID-defined sections on the way.
func walkSections(input string, base int, b []byte, depth int) ([][]byte, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(base + off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if depth > 4 {
		return nil, fail(0, "EFI_COMMON_SECTION_HEADER", "sections nested too deeply")
	}
	var out [][]byte
	for off := 0; off+sizeofFFSSectionHeader <= len(b); off = (off + 3) &^ 3 {
		size, hdr, typ := int(b[off])|int(b[off+1])<<8|int(b[off+2])<<16, sizeofFFSSectionHeader, b[off+3]
		if size == 0xffffff {
			if off+sizeofFFSSectionHeader2 > len(b) {
				return nil, fail(off, "EFI_COMMON_SECTION_HEADER2", "truncated")
			}
			size, hdr = int(binary.LittleEndian.Uint32(b[off+4:])), sizeofFFSSectionHeader2
		}
		if size < hdr || size > len(b)-off {
			return nil, fail(off, "EFI_COMMON_SECTION_HEADER.Size", "0x%x outside its file", size)
		}
		body := b[off+hdr : off+size]
		switch typ {
		case sectionFVImage:
			out = append(out, body)
		case sectionGUIDDefined:
			s, err := guidedSection(input, base+off+hdr, body, hdr, depth)
			if err != nil {
				return nil, err
			}
			out = append(out, s...)
		}
		off += size
	}
	return out, nil
}

func guidedSection(input string, base int, body []byte, hdr, depth int) ([][]byte, error) {
	fail := func(field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(base), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if len(body) < sizeofGUIDDefinedHead {
		return nil, fail("EFI_GUID_DEFINED_SECTION", "truncated")
	}
	if ovmf.GUID(body[:16]) != lzmaCustomDecompressGUID {
		return nil, nil
	}
	dataOff := int(binary.LittleEndian.Uint16(body[16:])) - hdr
	if dataOff < sizeofGUIDDefinedHead || dataOff > len(body) {
		return nil, fail("EFI_GUID_DEFINED_SECTION.DataOffset", "0x%x outside the section", dataOff+hdr)
	}
	zr, err := lzma.NewReader(bytes.NewReader(body[dataOff:]))
	if err != nil {
		return nil, &ovmf.FormatError{Input: input, Offset: int64(base + dataOff), Field: "LZMA stream", Err: err}
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(zr, maxDecompressed)); err != nil {
		return nil, &ovmf.FormatError{Input: input, Offset: int64(base + dataOff), Field: "LZMA stream", Err: err}
	}
	// Offsets inside the decompressed data are not file offsets; report
	// errors at the compressed section.
	s, err := walkSections(input+" (decompressed section)", 0, buf.Bytes(), depth+1)
	if err != nil {
		return nil, err
	}
	return s, nil
}
