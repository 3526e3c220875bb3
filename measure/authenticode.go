package measure

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/mkcvm/mkcvm/ovmf"
)

// PE/COFF image hashing (Authenticode).
//
// References: Microsoft "Windows Authenticode Portable Executable Signature
// Format" v1.0, section "Calculating the PE Image Hash"; Microsoft PE Format
// (optional header and section table layout); edk2-stable202211
// SecurityPkg/Library/DxeTpm2MeasureBootLib/DxeTpm2MeasureBootLib.c
// (Tcg2MeasurePeImage), which OVMF uses for the PCR 4
// EV_EFI_BOOT_SERVICES_APPLICATION digest.

// PEPadding selects how the trailing data after the last section is hashed.
type PEPadding int

const (
	// PadNone hashes the file as is: EDK2's measured-boot hash (PCR 4).
	PadNone PEPadding = iota
	// Pad8 appends 8 - FILE_SIZE%8 zero bytes to the hashed data when the
	// file length is not a multiple of 8, as the Authenticode document says
	// and as go-uefi's authenticode.Parse and osslsigncode (which pads the
	// file before appending a signature) do. It equals PadNone for files
	// whose length is a multiple of 8.
	Pad8
)

// Offsets in the PE/COFF headers (Microsoft PE Format, "MS-DOS Stub",
// "COFF File Header", "Optional Header").
const (
	peDOSLfanewOffset        = 0x3c // e_lfanew: file offset of "PE\0\0"
	sizeofPESignature        = 4
	sizeofCOFFHeader         = 20
	coffNumberOfSections     = 2  // within the COFF header
	coffSizeOfOptionalHeader = 16 // within the COFF header
	optMagic                 = 0
	optSizeOfHeaders         = 60
	optCheckSum              = 64
	optNumberOfRvaAndSizes32 = 92  // PE32
	optNumberOfRvaAndSizes64 = 108 // PE32+
	optDataDirectory32       = 96
	optDataDirectory64       = 112
	sizeofDataDirectory      = 8
	dirSecurity              = 4 // IMAGE_DIRECTORY_ENTRY_SECURITY (certificate table)
	sizeofSectionHeader      = 40
	secSizeOfRawData         = 16
	secPointerToRawData      = 20
	peMagic32                = 0x10b
	peMagic64                = 0x20b
)

// PEImageDigest returns the Authenticode hash of a PE/COFF image in bank
// alg. With PadNone it is the digest OVMF extends into PCR 4 when it loads
// the image (Tcg2MeasurePeImage); with Pad8 it is the digest a signature
// covers. input names the image in errors.
func PEImageDigest(input string, img []byte, alg HashAlg, pad PEPadding) ([]byte, error) {
	ranges, err := peHashRanges(input, img)
	if err != nil {
		return nil, err
	}
	h := alg.Hash().New()
	for _, r := range ranges {
		h.Write(img[r[0]:r[1]])
	}
	// "If FILE_SIZE is not a multiple of 8 bytes, the data added to the
	// hash must be appended with zero padding of length (8 - (FILE_SIZE %
	// 8)) bytes" -- FILE_SIZE being the whole file, as go-uefi reads it.
	if n := len(img); pad == Pad8 && n%8 != 0 {
		h.Write(make([]byte, 8-n%8))
	}
	return h.Sum(nil), nil
}

// peHashRanges returns the [start, end) byte ranges of img that the
// Authenticode hash covers, in hashing order.
func peHashRanges(input string, img []byte) ([][2]int, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	u16 := func(off int) int { return int(binary.LittleEndian.Uint16(img[off:])) }
	u32 := func(off int) int { return int(binary.LittleEndian.Uint32(img[off:])) }
	if len(img) < peDOSLfanewOffset+4 {
		return nil, fail(0, "DOS header", "file is %d bytes, too short for a PE image", len(img))
	}
	pe := 0
	if img[0] == 'M' && img[1] == 'Z' {
		pe = u32(peDOSLfanewOffset)
	}
	coff := pe + sizeofPESignature
	opt := coff + sizeofCOFFHeader
	if pe < 0 || opt+optDataDirectory32 > len(img) {
		return nil, fail(peDOSLfanewOffset, "e_lfanew", "PE header at 0x%x beyond the %d-byte file", pe, len(img))
	}
	if string(img[pe:pe+4]) != "PE\x00\x00" {
		return nil, fail(pe, "Signature", "%q, want \"PE\\0\\0\"", img[pe:pe+4])
	}
	nsec, optSize := u16(coff+coffNumberOfSections), u16(coff+coffSizeOfOptionalHeader)
	var nDirsOff, dirOff int
	switch m := u16(opt + optMagic); m {
	case peMagic32:
		nDirsOff, dirOff = opt+optNumberOfRvaAndSizes32, opt+optDataDirectory32
	case peMagic64:
		nDirsOff, dirOff = opt+optNumberOfRvaAndSizes64, opt+optDataDirectory64
	default:
		return nil, fail(opt, "OptionalHeader.Magic", "0x%x, want 0x10b or 0x20b", m)
	}
	if dirOff > len(img) {
		return nil, fail(opt, "OptionalHeader", "truncated")
	}
	sizeOfHeaders := u32(opt + optSizeOfHeaders)
	nDirs := u32(nDirsOff)
	secTable := opt + optSize
	secEnd := secTable + nsec*sizeofSectionHeader
	if secEnd > len(img) || secEnd < secTable {
		return nil, fail(coff+coffNumberOfSections, "NumberOfSections", "%d section headers at 0x%x run past the %d-byte file", nsec, secTable, len(img))
	}
	if sizeOfHeaders > len(img) || sizeOfHeaders < opt+optCheckSum+4 {
		return nil, fail(opt+optSizeOfHeaders, "OptionalHeader.SizeOfHeaders", "0x%x outside the %d-byte file", sizeOfHeaders, len(img))
	}
	cksum := opt + optCheckSum
	ranges := [][2]int{{0, cksum}}
	certSize := 0
	if nDirs <= dirSecurity {
		ranges = append(ranges, [2]int{cksum + 4, sizeOfHeaders})
	} else {
		sec := dirOff + dirSecurity*sizeofDataDirectory
		if sec+sizeofDataDirectory > sizeOfHeaders {
			return nil, fail(sec, "DataDirectory[SECURITY]", "outside SizeOfHeaders 0x%x", sizeOfHeaders)
		}
		certSize = u32(sec + 4)
		ranges = append(ranges, [2]int{cksum + 4, sec}, [2]int{sec + sizeofDataDirectory, sizeOfHeaders})
	}
	type section struct{ ptr, size, hdr int }
	var secs []section
	for i := range nsec {
		h := secTable + i*sizeofSectionHeader
		s := section{ptr: u32(h + secPointerToRawData), size: u32(h + secSizeOfRawData), hdr: h}
		if s.size == 0 {
			continue
		}
		if s.ptr > len(img) || s.size > len(img)-s.ptr {
			return nil, fail(h+secSizeOfRawData, fmt.Sprintf("section[%d].SizeOfRawData", i), "raw data 0x%x+0x%x past the %d-byte file", s.ptr, s.size, len(img))
		}
		secs = append(secs, s)
	}
	slices.SortStableFunc(secs, func(a, b section) int { return a.ptr - b.ptr })
	sum := sizeOfHeaders
	for _, s := range secs {
		ranges = append(ranges, [2]int{s.ptr, s.ptr + s.size})
		sum += s.size
	}
	if len(img) > sum {
		if certSize > len(img)-sum {
			return nil, fail(dirOff+dirSecurity*sizeofDataDirectory+4, "DataDirectory[SECURITY].Size", "0x%x larger than the 0x%x bytes after the sections", certSize, len(img)-sum)
		}
		ranges = append(ranges, [2]int{sum, len(img) - certSize})
	}
	return ranges, nil
}
