package ovmf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// TDX metadata ("TDVF metadata") layout.
//
// Sources:
//   - Intel TDX Virtual Firmware Design Guide (TDVF), rev 1.01 (Oct 2021),
//     section 11 "TDVF metadata": TDX_METADATA_DESCRIPTOR and
//     TDX_METADATA_SECTION, section types and attributes.
//   - edk2 OvmfPkg/ResetVector/X64/IntelTdxMetadata.asm and
//     OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm (edk2-stable202211): the
//     footer-table entry TdxMetadataOffsetGuid holds a UINT32 distance from
//     the end of the image to the descriptor, which is preceded by the
//     16-byte TdxMetadataGuid.
//   - td-shim td-shim-tools td_shim_tee_info_hash.py (the descriptor and
//     section checks it performs before computing MRTD).
const (
	// SizeofTDXMetadataDescriptor is TDX_METADATA_DESCRIPTOR without its
	// sections: Signature, Length, Version, NumberOfSectionEntry (UINT32 each).
	SizeofTDXMetadataDescriptor = 16
	// SizeofTDXMetadataSection is one TDX_METADATA_SECTION.
	SizeofTDXMetadataSection = 32
	// TDXMetadataVersion is the only descriptor version defined (TDVF 11.2).
	TDXMetadataVersion = 1
	// TDXPageSize is the TD private page granularity (4 KiB).
	TDXPageSize = 0x1000
	// maxTDXSections caps NumberOfSectionEntry so a hostile count cannot
	// make the decoder allocate much; real firmware has fewer than 16.
	maxTDXSections = 256
)

// Offsets inside TDX_METADATA_DESCRIPTOR (TDVF 11.2, table 11-2).
const (
	tdxDescSignatureOff = 0
	tdxDescLengthOff    = 4
	tdxDescVersionOff   = 8
	tdxDescCountOff     = 12
)

// Offsets inside TDX_METADATA_SECTION (TDVF 11.3, table 11-3).
const (
	tdxSecDataOffsetOff     = 0
	tdxSecRawDataSizeOff    = 4
	tdxSecMemoryAddressOff  = 8
	tdxSecMemoryDataSizeOff = 16
	tdxSecTypeOff           = 24
	tdxSecAttributesOff     = 28
)

// TDXMetadataSignature is the descriptor signature "TDVF" (TDVF 11.2).
var TDXMetadataSignature = [4]byte{'T', 'D', 'V', 'F'}

var (
	// TDXMetadataOffsetGUID names the footer-table entry whose UINT32 data
	// is the distance from the end of the image to the TDX metadata
	// descriptor (ResetVectorVtf0.asm "tdxMetadataOffsetStart").
	TDXMetadataOffsetGUID = MustParseGUID("e47a6535-984a-4798-865e-4685a7bf8ec2")
	// TDXMetadataGUID precedes the descriptor (IntelTdxMetadata.asm
	// "TdxMetadataGuid").
	TDXMetadataGUID = MustParseGUID("e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae")
)

// ErrNoTDXMetadata means the image has no TDX metadata: the footer table
// lacks the TDX metadata offset entry, so the firmware cannot be launched
// (or measured) as a TDX guest.
var ErrNoTDXMetadata = errors.New("no TDX metadata")

// TDXSectionType is TDX_METADATA_SECTION.Type (TDVF 11.3, table 11-4; types
// 5-8 come from td-shim's extension of the same table).
type TDXSectionType uint32

// Section types.
const (
	TDXSectionBFV          TDXSectionType = 0 // boot firmware volume (code)
	TDXSectionCFV          TDXSectionType = 1 // configuration firmware volume (variables)
	TDXSectionTDHOB        TDXSectionType = 2 // TD hand-off block, written by the VMM
	TDXSectionTempMem      TDXSectionType = 3 // temporary memory, zero pages
	TDXSectionPermMem      TDXSectionType = 4 // permanent memory, added by TDH.MEM.PAGE.AUG
	TDXSectionPayload      TDXSectionType = 5 // td-shim payload (kernel)
	TDXSectionPayloadParam TDXSectionType = 6 // td-shim payload parameters
	TDXSectionTDInfo       TDXSectionType = 7 // td-shim TD_INFO
	TDXSectionTDParams     TDXSectionType = 8 // td-shim TD_PARAMS
	numTDXSectionTypes                    = 9
)

var tdxSectionTypeNames = [numTDXSectionTypes]string{
	"BFV", "CFV", "TD_HOB", "TempMem", "PermMem", "Payload", "PayloadParam", "TD_INFO", "TD_PARAMS",
}

// String returns the TDVF name of t, or "type(N)" for an unknown value.
func (t TDXSectionType) String() string {
	if t < numTDXSectionTypes {
		return tdxSectionTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// Section attributes (TDVF 11.3, table 11-5).
const (
	// TDXAttrExtendMR: the VMM extends MRTD with the page contents
	// (TDH.MR.EXTEND) after adding them.
	TDXAttrExtendMR uint32 = 0x1
	// TDXAttrPageAug: the pages are added after launch with
	// TDH.MEM.PAGE.AUG, so they are not part of MRTD.
	TDXAttrPageAug uint32 = 0x2
	tdxKnownAttrs         = TDXAttrExtendMR | TDXAttrPageAug
)

// TDXMetadataSection is one TDX_METADATA_SECTION (TDVF 11.3).
type TDXMetadataSection struct {
	// DataOffset is the offset of the raw data in the whole flash image
	// (VARS + CODE), not in a CODE-only file.
	DataOffset     uint32
	RawDataSize    uint32
	MemoryAddress  uint64 // guest physical address, 4 KiB aligned
	MemoryDataSize uint64 // bytes of guest memory, 4 KiB multiple
	Type           TDXSectionType
	Attributes     uint32
}

// Pages is the number of 4 KiB pages the section occupies in guest memory.
func (s TDXMetadataSection) Pages() uint64 { return s.MemoryDataSize / TDXPageSize }

// TDXMetadata is the parsed TDX metadata descriptor with its sections in
// file order (which is the order a VMM adds them to the TD).
type TDXMetadata struct {
	// Offset is the file offset of the descriptor (just after the GUID).
	Offset   int64
	Version  uint32
	Sections []TDXMetadataSection
}

// Section returns the first section of type t.
func (m *TDXMetadata) Section(t TDXSectionType) (TDXMetadataSection, bool) {
	for _, s := range m.Sections {
		if s.Type == t {
			return s, true
		}
	}
	return TDXMetadataSection{}, false
}

// ParseTDXMetadata finds and parses the TDX metadata of the flash image fw
// through the footer GUID table. input names the image in errors. It fails
// with a *FormatError wrapping ErrNoTDXMetadata when the image has no TDX
// metadata entry, and with a *FormatError naming the offset and field for
// any malformed descriptor or section, including raw data that lies past
// the end of fw (the usual sign of a CODE-only file: section offsets refer
// to the combined VARS+CODE image).
func ParseTDXMetadata(input string, fw []byte) (*TDXMetadata, error) {
	tab, err := ParseFooterTable(input, fw)
	if err != nil {
		if errors.Is(err, ErrNoFooterTable) {
			return nil, &FormatError{Input: input, Offset: int64(len(fw)) - FooterTableEndGap - SizeofFooterEntryHeader,
				Field: "footer table", Reason: "no OVMF footer GUID table, so no TDX metadata", Err: errors.Join(ErrNoTDXMetadata, err)}
		}
		return nil, err
	}
	e, ok := tab.Lookup(TDXMetadataOffsetGUID)
	if !ok {
		return nil, &FormatError{Input: input, Offset: int64(len(fw)) - FooterTableEndGap, Field: "footer table",
			Reason: fmt.Sprintf("no TDX metadata offset entry %s", TDXMetadataOffsetGUID), Err: ErrNoTDXMetadata}
	}
	if len(e.Data) != 4 {
		return nil, formatErr(input, e.Offset, "TDX metadata offset entry", "data is 0x%x bytes, want 4", len(e.Data))
	}
	fromEnd := int64(binary.LittleEndian.Uint32(e.Data))
	desc := int64(len(fw)) - fromEnd
	if fromEnd > int64(len(fw)) || desc < SizeofGUID {
		return nil, formatErr(input, e.Offset, "TDX metadata offset", "0x%x from the end of the 0x%x-byte image points before its start", fromEnd, len(fw))
	}
	m, err := DecodeTDXMetadata(input, fw[desc-SizeofGUID:], desc-SizeofGUID)
	if err != nil {
		return nil, err
	}
	if err := m.checkRawData(input, int64(len(fw))); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeTDXMetadata decodes a TDX metadata block: the 16-byte
// TdxMetadataGuid followed by the descriptor and its sections. base is the
// file offset of b[0], used in errors and in the returned Offset. It checks
// the descriptor and every section (alignment, sizes, types, attributes,
// overlapping guest ranges) but not raw data against an image; see
// ParseTDXMetadata.
func DecodeTDXMetadata(input string, b []byte, base int64) (*TDXMetadata, error) {
	if len(b) < SizeofGUID+SizeofTDXMetadataDescriptor {
		return nil, formatErr(input, base, "TDX metadata", "0x%x bytes, want at least 0x%x", len(b), SizeofGUID+SizeofTDXMetadataDescriptor)
	}
	if g := GUID(b[:SizeofGUID]); g != TDXMetadataGUID {
		return nil, formatErr(input, base, "TDX metadata GUID", "got %s, want %s", g, TDXMetadataGUID)
	}
	d := b[SizeofGUID:]
	dOff := base + SizeofGUID
	if sig := [4]byte(d[tdxDescSignatureOff : tdxDescSignatureOff+4]); sig != TDXMetadataSignature {
		return nil, formatErr(input, dOff+tdxDescSignatureOff, "TDX_METADATA_DESCRIPTOR.Signature", "got %q, want \"TDVF\"", sig[:])
	}
	version := binary.LittleEndian.Uint32(d[tdxDescVersionOff:])
	if version != TDXMetadataVersion {
		return nil, formatErr(input, dOff+tdxDescVersionOff, "TDX_METADATA_DESCRIPTOR.Version", "got %d, want %d", version, TDXMetadataVersion)
	}
	count := binary.LittleEndian.Uint32(d[tdxDescCountOff:])
	if count == 0 || count > maxTDXSections {
		return nil, formatErr(input, dOff+tdxDescCountOff, "TDX_METADATA_DESCRIPTOR.NumberOfSectionEntry", "%d, want 1..%d", count, maxTDXSections)
	}
	length := binary.LittleEndian.Uint32(d[tdxDescLengthOff:])
	want := uint64(SizeofTDXMetadataDescriptor) + uint64(count)*SizeofTDXMetadataSection
	if uint64(length) != want {
		return nil, formatErr(input, dOff+tdxDescLengthOff, "TDX_METADATA_DESCRIPTOR.Length", "0x%x, want 0x%x for %d sections", length, want, count)
	}
	if uint64(len(d)) < want {
		return nil, formatErr(input, dOff+tdxDescLengthOff, "TDX_METADATA_DESCRIPTOR.Length", "0x%x reaches past the end of the input (0x%x bytes left)", length, len(d))
	}
	m := &TDXMetadata{Offset: dOff, Version: version}
	for i := range int(count) {
		off := SizeofTDXMetadataDescriptor + i*SizeofTDXMetadataSection
		s := decodeTDXSection(d[off : off+SizeofTDXMetadataSection])
		if err := checkTDXSection(input, dOff+int64(off), i, s); err != nil {
			return nil, err
		}
		m.Sections = append(m.Sections, s)
	}
	if err := m.checkLayout(input); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeTDXSection reads one TDX_METADATA_SECTION; b is exactly
// SizeofTDXMetadataSection bytes.
func decodeTDXSection(b []byte) TDXMetadataSection {
	return TDXMetadataSection{
		DataOffset:     binary.LittleEndian.Uint32(b[tdxSecDataOffsetOff:]),
		RawDataSize:    binary.LittleEndian.Uint32(b[tdxSecRawDataSizeOff:]),
		MemoryAddress:  binary.LittleEndian.Uint64(b[tdxSecMemoryAddressOff:]),
		MemoryDataSize: binary.LittleEndian.Uint64(b[tdxSecMemoryDataSizeOff:]),
		Type:           TDXSectionType(binary.LittleEndian.Uint32(b[tdxSecTypeOff:])),
		Attributes:     binary.LittleEndian.Uint32(b[tdxSecAttributesOff:]),
	}
}

// checkTDXSection applies the per-section rules of TDVF 11.3 (as QEMU's
// hw/i386/tdvf.c and td-shim enforce them). off is the section's file offset.
func checkTDXSection(input string, off int64, i int, s TDXMetadataSection) error {
	field := func(name string) string { return fmt.Sprintf("TDX metadata section[%d] (%s).%s", i, s.Type, name) }
	switch {
	case s.Type >= numTDXSectionTypes:
		return formatErr(input, off+tdxSecTypeOff, field("Type"), "unknown section type %d", uint32(s.Type))
	case s.Attributes&^tdxKnownAttrs != 0:
		return formatErr(input, off+tdxSecAttributesOff, field("Attributes"), "0x%x has unknown bits 0x%x", s.Attributes, s.Attributes&^tdxKnownAttrs)
	case s.MemoryAddress%TDXPageSize != 0:
		return formatErr(input, off+tdxSecMemoryAddressOff, field("MemoryAddress"), "0x%x not 4 KiB aligned", s.MemoryAddress)
	case s.MemoryDataSize%TDXPageSize != 0:
		return formatErr(input, off+tdxSecMemoryDataSizeOff, field("MemoryDataSize"), "0x%x not a multiple of 4 KiB", s.MemoryDataSize)
	case s.MemoryAddress+s.MemoryDataSize < s.MemoryAddress:
		return formatErr(input, off+tdxSecMemoryDataSizeOff, field("MemoryDataSize"), "0x%x at 0x%x overflows the address space", s.MemoryDataSize, s.MemoryAddress)
	case s.Type != TDXSectionTDInfo && uint64(s.RawDataSize) > s.MemoryDataSize:
		return formatErr(input, off+tdxSecRawDataSizeOff, field("RawDataSize"), "0x%x larger than MemoryDataSize 0x%x", s.RawDataSize, s.MemoryDataSize)
	case uint64(s.DataOffset)+uint64(s.RawDataSize) > 1<<32:
		return formatErr(input, off+tdxSecRawDataSizeOff, field("RawDataSize"), "0x%x at offset 0x%x overflows UINT32", s.RawDataSize, s.DataOffset)
	}
	switch s.Type {
	case TDXSectionTDHOB, TDXSectionTempMem, TDXSectionPermMem:
		// TDVF 11.3: these carry no data from the image and are never
		// extended into MRTD.
		if s.RawDataSize != 0 || s.DataOffset != 0 {
			return formatErr(input, off+tdxSecRawDataSizeOff, field("RawDataSize"), "0x%x at offset 0x%x, want no raw data for %s", s.RawDataSize, s.DataOffset, s.Type)
		}
		if s.Attributes&TDXAttrExtendMR != 0 {
			return formatErr(input, off+tdxSecAttributesOff, field("Attributes"), "MR.EXTEND set on a %s section", s.Type)
		}
	case TDXSectionBFV, TDXSectionCFV:
		if s.RawDataSize == 0 {
			return formatErr(input, off+tdxSecRawDataSizeOff, field("RawDataSize"), "0 for a %s section", s.Type)
		}
	}
	if s.Attributes&TDXAttrPageAug != 0 && s.Attributes&TDXAttrExtendMR != 0 {
		// PAGE.AUG pages are added after TDH.MR.FINALIZE and cannot be
		// extended into MRTD.
		return formatErr(input, off+tdxSecAttributesOff, field("Attributes"), "0x%x sets both MR.EXTEND and PAGE.AUG", s.Attributes)
	}
	if s.Type == TDXSectionPermMem && s.Attributes&TDXAttrPageAug == 0 {
		return formatErr(input, off+tdxSecAttributesOff, field("Attributes"), "PermMem section without PAGE.AUG")
	}
	return nil
}

// checkLayout rejects overlapping guest ranges and a missing or repeated
// BFV / TD_HOB (TDVF 11.3: exactly one BFV, at most one TD_HOB).
func (m *TDXMetadata) checkLayout(input string) error {
	secOff := func(i int) int64 { return m.Offset + SizeofTDXMetadataDescriptor + int64(i)*SizeofTDXMetadataSection }
	counts := map[TDXSectionType]int{}
	for i, s := range m.Sections {
		counts[s.Type]++
		if (s.Type == TDXSectionBFV || s.Type == TDXSectionTDHOB) && counts[s.Type] > 1 {
			return formatErr(input, secOff(i)+tdxSecTypeOff, fmt.Sprintf("TDX metadata section[%d].Type", i), "second %s section", s.Type)
		}
	}
	if counts[TDXSectionBFV] == 0 {
		return formatErr(input, m.Offset, "TDX metadata", "no BFV section")
	}
	idx := make([]int, len(m.Sections))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		sa, sb := m.Sections[a].MemoryAddress, m.Sections[b].MemoryAddress
		switch {
		case sa < sb:
			return -1
		case sa > sb:
			return 1
		}
		return 0
	})
	for k := 1; k < len(idx); k++ {
		p, c := m.Sections[idx[k-1]], m.Sections[idx[k]]
		if p.MemoryDataSize > 0 && c.MemoryDataSize > 0 && p.MemoryAddress+p.MemoryDataSize > c.MemoryAddress {
			return formatErr(input, secOff(idx[k])+tdxSecMemoryAddressOff, fmt.Sprintf("TDX metadata section[%d] (%s).MemoryAddress", idx[k], c.Type),
				"0x%x overlaps section[%d] (%s) at 0x%x..0x%x", c.MemoryAddress, idx[k-1], p.Type, p.MemoryAddress, p.MemoryAddress+p.MemoryDataSize)
		}
	}
	return nil
}

// checkRawData checks that every section's raw data lies inside an image of
// size n. Section offsets refer to the whole flash image (VARS + CODE), so a
// CODE-only file fails here with a hint.
func (m *TDXMetadata) checkRawData(input string, n int64) error {
	for i, s := range m.Sections {
		end := int64(s.DataOffset) + int64(s.RawDataSize)
		if s.RawDataSize == 0 || end <= n {
			continue
		}
		off := m.Offset + SizeofTDXMetadataDescriptor + int64(i)*SizeofTDXMetadataSection + tdxSecDataOffsetOff
		return formatErr(input, off, fmt.Sprintf("TDX metadata section[%d] (%s).DataOffset", i, s.Type),
			"raw data 0x%x..0x%x ends past the 0x%x-byte image (0x%x bytes short); TDX section offsets refer to the whole flash image (VARS+CODE), so use the combined image (e.g. OVMF.fd), not a CODE-only file",
			s.DataOffset, end, n, end-n)
	}
	return nil
}
