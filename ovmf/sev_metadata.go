package ovmf

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

// SEV metadata layout, from edk2 OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm
// (edk2-stable202405). The footer table entry SEVMetadataGUID holds a UINT32
// offset of the metadata from the end of the image. The metadata is a
// 16-byte header ("ASEV", Length, Version, NumItems) followed by NumItems
// 12-byte section descriptors (Base, Size, Type), all little-endian.
const (
	SizeofSEVMetadataHeader  = 16
	SizeofSEVMetadataSection = 12
	// SEVMetadataVersion is the only version edk2 defines.
	SEVMetadataVersion = 1
	// PageSize is the SNP page granularity (4 KiB).
	PageSize = 0x1000
	// FourGiB is where the firmware image ends in guest-physical memory.
	FourGiB = 1 << 32
)

// SEVMetadataGUID is the footer table entry pointing at the SEV metadata
// (OvmfSevMetadata.asm "SEV_METADATA_GUID").
var SEVMetadataGUID = MustParseGUID("dc886566-984a-4798-a75e-5585a7bf67cc")

var sevMetadataSignature = [4]byte{'A', 'S', 'E', 'V'}

// SEVSectionType is the Type of an SEV metadata section.
type SEVSectionType uint32

// Section types of OvmfSevMetadata.asm.
const (
	SNPSecMemory    SEVSectionType = 1    // OVMF_SECTION_TYPE_SNP_SEC_MEM
	SNPSecrets      SEVSectionType = 2    // OVMF_SECTION_TYPE_SNP_SECRETS
	SNPCPUID        SEVSectionType = 3    // OVMF_SECTION_TYPE_CPUID
	SNPSVSMCAA      SEVSectionType = 4    // OVMF_SECTION_TYPE_SVSM_CAA
	SNPKernelHashes SEVSectionType = 0x10 // OVMF_SECTION_TYPE_KERNEL_HASHES
)

// String returns the edk2 name without the prefix.
func (t SEVSectionType) String() string {
	switch t {
	case SNPSecMemory:
		return "SNP_SEC_MEMORY"
	case SNPSecrets:
		return "SNP_SECRETS"
	case SNPCPUID:
		return "CPUID"
	case SNPSVSMCAA:
		return "SVSM_CAA"
	case SNPKernelHashes:
		return "SNP_KERNEL_HASHES"
	}
	return fmt.Sprintf("unknown(0x%x)", uint32(t))
}

func (t SEVSectionType) known() bool { return t.String()[0] != 'u' }

// SEVMetadataSection is one section descriptor.
type SEVMetadataSection struct {
	GPA  uint32 // guest-physical base, page-aligned
	Size uint32 // bytes, a non-zero multiple of PageSize
	Type SEVSectionType
	// Offset is the file offset of the descriptor (for error messages).
	Offset int64
}

// End returns GPA+Size without overflow.
func (s SEVMetadataSection) End() uint64 { return uint64(s.GPA) + uint64(s.Size) }

// SEVMetadata is the parsed OVMF SEV metadata.
type SEVMetadata struct {
	Offset   int64 // file offset of the header
	Version  uint32
	Sections []SEVMetadataSection // in file order
}

// Has reports whether a section of type t exists.
func (m *SEVMetadata) Has(t SEVSectionType) bool {
	return slices.ContainsFunc(m.Sections, func(s SEVMetadataSection) bool { return s.Type == t })
}

// ParseSEVMetadata locates the SEV metadata through the footer table t of
// fw and parses it. It returns a *FormatError wrapping ErrNoSEVMetadata
// when the table has no SEV metadata entry, and a *FormatError for a bad
// pointer, signature, version or length, an unknown section type, a section
// that is not page-aligned, empty, beyond 4 GiB, or overlapping another.
func ParseSEVMetadata(input string, fw []byte, t *FooterTable) (*SEVMetadata, error) {
	e, ok := t.Lookup(SEVMetadataGUID)
	if !ok {
		return nil, &FormatError{Input: input, Offset: int64(len(fw)), Field: "footer table",
			Reason: fmt.Sprintf("no SEV metadata entry %s (firmware not built for SEV-SNP)", SEVMetadataGUID), Err: ErrNoSEVMetadata}
	}
	if len(e.Data) != 4 {
		return nil, formatErr(input, e.Offset, "SEV metadata entry", "data is %d bytes, want 4", len(e.Data))
	}
	fromEnd := int64(binary.LittleEndian.Uint32(e.Data))
	start := int64(len(fw)) - fromEnd
	if fromEnd == 0 || start < 0 || start+SizeofSEVMetadataHeader > int64(len(fw)) {
		return nil, formatErr(input, e.Offset, "SEV metadata entry.Offset", "0x%x from the end is outside the 0x%x-byte image", fromEnd, len(fw))
	}
	m, err := parseSEVMetadataAt(input, fw, start)
	if err != nil {
		return nil, err
	}
	return m, checkSections(input, m.Sections)
}

func parseSEVMetadataAt(input string, fw []byte, start int64) (*SEVMetadata, error) {
	h := fw[start : start+SizeofSEVMetadataHeader]
	if [4]byte(h[0:4]) != sevMetadataSignature {
		return nil, formatErr(input, start, "SEV metadata.Signature", "got %q, want \"ASEV\"", h[0:4])
	}
	length := int64(binary.LittleEndian.Uint32(h[4:8]))
	version := binary.LittleEndian.Uint32(h[8:12])
	num := int64(binary.LittleEndian.Uint32(h[12:16]))
	if version != SEVMetadataVersion {
		return nil, formatErr(input, start+8, "SEV metadata.Version", "got %d, want %d", version, SEVMetadataVersion)
	}
	if length < SizeofSEVMetadataHeader || start+length > int64(len(fw)) {
		return nil, formatErr(input, start+4, "SEV metadata.Length", "0x%x does not fit between offset 0x%x and the image end 0x%x", length, start, len(fw))
	}
	if need := SizeofSEVMetadataHeader + num*SizeofSEVMetadataSection; need > length {
		return nil, formatErr(input, start+12, "SEV metadata.NumItems", "%d sections need 0x%x bytes, Length is 0x%x", num, need, length)
	}
	m := &SEVMetadata{Offset: start, Version: version}
	for i := range num {
		off := start + SizeofSEVMetadataHeader + i*SizeofSEVMetadataSection
		d := fw[off : off+SizeofSEVMetadataSection]
		s := SEVMetadataSection{
			GPA: binary.LittleEndian.Uint32(d[0:4]), Size: binary.LittleEndian.Uint32(d[4:8]),
			Type: SEVSectionType(binary.LittleEndian.Uint32(d[8:12])), Offset: off,
		}
		m.Sections = append(m.Sections, s)
	}
	return m, nil
}

// checkSections rejects unknown types, misaligned, empty, out-of-range and
// overlapping sections.
func checkSections(input string, ss []SEVMetadataSection) error {
	for i, s := range ss {
		f := fmt.Sprintf("SEV metadata section[%d]", i)
		switch {
		case !s.Type.known():
			return formatErr(input, s.Offset+8, f+".Type", "unknown section type 0x%x", uint32(s.Type))
		case s.GPA%PageSize != 0:
			return formatErr(input, s.Offset, f+".Base", "0x%x not page-aligned", s.GPA)
		case s.Size == 0 || s.Size%PageSize != 0:
			return formatErr(input, s.Offset+4, f+".Size", "0x%x not a non-zero multiple of the page size", s.Size)
		case s.End() > FourGiB:
			return formatErr(input, s.Offset+4, f+".Size", "section 0x%x+0x%x ends beyond 4 GiB", s.GPA, s.Size)
		}
	}
	idx := make([]int, len(ss))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(ss[a].GPA, ss[b].GPA) })
	for k := 1; k < len(idx); k++ {
		p, c := ss[idx[k-1]], ss[idx[k]]
		if uint64(c.GPA) < p.End() {
			return formatErr(input, c.Offset, fmt.Sprintf("SEV metadata section[%d].Base", idx[k]),
				"section 0x%x+0x%x overlaps section[%d] 0x%x+0x%x", c.GPA, c.Size, idx[k-1], p.GPA, p.Size)
		}
	}
	return nil
}

// MarshalBinary encodes the header and section descriptors. Offsets are
// ignored.
func (m *SEVMetadata) MarshalBinary() ([]byte, error) {
	n := len(m.Sections)
	b := append([]byte(nil), sevMetadataSignature[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(SizeofSEVMetadataHeader+n*SizeofSEVMetadataSection))
	b = binary.LittleEndian.AppendUint32(b, m.Version)
	b = binary.LittleEndian.AppendUint32(b, uint32(n))
	for _, s := range m.Sections {
		b = binary.LittleEndian.AppendUint32(b, s.GPA)
		b = binary.LittleEndian.AppendUint32(b, s.Size)
		b = binary.LittleEndian.AppendUint32(b, uint32(s.Type))
	}
	return b, nil
}
