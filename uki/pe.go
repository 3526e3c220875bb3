package uki

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
)

// PE/COFF layout constants (Microsoft PE Format, rev 11).
const (
	dosLfanewOffset       = 0x3c // MS-DOS stub: offset of the PE signature (§2)
	sizeofPESignature     = 4    // "PE\0\0" (§2)
	SizeofCOFFHeader      = 20   // COFF file header (§3.3)
	SizeofSectionHeader   = 40   // section table entry (§4)
	sizeofCOFFSymbol      = 18   // COFF symbol table record (§5.4)
	optMagicPE32Plus      = 0x20b
	MachineAMD64          = 0x8664 // IMAGE_FILE_MACHINE_AMD64 (§3.3.1)
	sizeofOptHeaderFixed  = 112    // PE32+ optional header before the data directories (§3.4)
	sizeofDataDirectory   = 8      // (§3.4.3)
	certTableIndex        = 4      // Certificate Table data directory (§3.4.3)
	baseRelocIndex        = 5      // Base Relocation Table data directory (§3.4.3)
	maxSections           = 96     // loaders' practical limit (§3.3: NumberOfSections)
	optSizeOfCode         = 4
	optSizeOfInitData     = 8
	optSectionAlignment   = 32
	optFileAlignment      = 36
	optSizeOfImage        = 56
	optSizeOfHeaders      = 60
	optCheckSum           = 64
	optNumberOfRvaAndSize = 108

	// ScnInitializedReadOnly is IMAGE_SCN_CNT_INITIALIZED_DATA |
	// IMAGE_SCN_MEM_READ (§4.1), the flags ukify gives UKI sections.
	ScnInitializedReadOnly = 0x40000040
)

// SectionHeader is one PE section table entry (PE/COFF §4).
type SectionHeader struct {
	Name             string // up to 8 bytes, NUL padded on disk
	VirtualSize      uint32
	VirtualAddress   uint32
	SizeOfRawData    uint32
	PointerToRawData uint32
	Characteristics  uint32
	// Relocation and line-number fields (§4) are carried verbatim.
	PointerToRelocations, PointerToLinenumbers uint32
	NumberOfRelocations, NumberOfLinenumbers   uint16
}

// PE holds the header fields of a PE32+ image that assembling a UKI reads
// or rewrites, with their file offsets.
type PE struct {
	Machine          uint16
	NumberOfSections int
	// PointerToSymbolTable and NumberOfSymbols locate the deprecated COFF
	// symbol table (§3.3), which some stubs still carry after their last
	// section.
	PointerToSymbolTable, NumberOfSymbols uint32
	SectionAlignment                      uint32
	FileAlignment                         uint32
	SizeOfImage                           uint32
	SizeOfHeaders                         uint32
	CertTable                             [2]uint32 // data directory 4: file offset, size
	Sections                              []SectionHeader

	coffOff   int // offset of the COFF header
	optOff    int // offset of the optional header
	secTabOff int // offset of the section table
	numDirs   int
}

// ParsePE decodes the PE32+ headers and section table of b. input names
// b in errors.
func ParsePE(input string, b []byte) (*PE, error) {
	if len(b) < dosLfanewOffset+4 || b[0] != 'M' || b[1] != 'Z' {
		return nil, formatErr(input, 0, "MS-DOS header.e_magic", ErrNotPE, "want \"MZ\"")
	}
	lfanew := int(binary.LittleEndian.Uint32(b[dosLfanewOffset:]))
	if lfanew > len(b)-sizeofPESignature-SizeofCOFFHeader || !bytes.Equal(b[lfanew:lfanew+4], []byte("PE\x00\x00")) {
		return nil, formatErr(input, dosLfanewOffset, "MS-DOS header.e_lfanew", ErrNotPE, "0x%x does not point at a PE signature", lfanew)
	}
	p := &PE{coffOff: lfanew + sizeofPESignature}
	c := b[p.coffOff : p.coffOff+SizeofCOFFHeader]
	p.Machine = binary.LittleEndian.Uint16(c[0:])
	if p.Machine != MachineAMD64 {
		return nil, formatErr(input, int64(p.coffOff), "COFF header.Machine", ErrWrongMachine, "0x%04x, want 0x%04x (x86-64)", p.Machine, MachineAMD64)
	}
	p.NumberOfSections = int(binary.LittleEndian.Uint16(c[2:]))
	p.PointerToSymbolTable = binary.LittleEndian.Uint32(c[8:])
	p.NumberOfSymbols = binary.LittleEndian.Uint32(c[12:])
	optSize := int(binary.LittleEndian.Uint16(c[16:]))
	p.optOff = p.coffOff + SizeofCOFFHeader
	if err := p.parseOptional(input, b, optSize); err != nil {
		return nil, err
	}
	return p, p.parseSections(input, b)
}

func (p *PE) parseOptional(input string, b []byte, optSize int) error {
	if optSize < sizeofOptHeaderFixed || p.optOff+optSize > len(b) {
		return formatErr(input, int64(p.coffOff+16), "COFF header.SizeOfOptionalHeader", ErrNotPE, "%d does not fit a PE32+ optional header in %d bytes", optSize, len(b))
	}
	o := b[p.optOff : p.optOff+optSize]
	if m := binary.LittleEndian.Uint16(o); m != optMagicPE32Plus {
		return formatErr(input, int64(p.optOff), "optional header.Magic", ErrWrongMachine, "0x%x, want 0x20b (PE32+)", m)
	}
	p.SectionAlignment = binary.LittleEndian.Uint32(o[optSectionAlignment:])
	p.FileAlignment = binary.LittleEndian.Uint32(o[optFileAlignment:])
	p.SizeOfImage = binary.LittleEndian.Uint32(o[optSizeOfImage:])
	p.SizeOfHeaders = binary.LittleEndian.Uint32(o[optSizeOfHeaders:])
	if !pow2(p.FileAlignment) || p.FileAlignment < 512 || !pow2(p.SectionAlignment) || p.SectionAlignment < p.FileAlignment {
		return formatErr(input, int64(p.optOff+optSectionAlignment), "optional header.SectionAlignment/FileAlignment", nil, "0x%x/0x%x: want powers of two, FileAlignment >= 512 and <= SectionAlignment", p.SectionAlignment, p.FileAlignment)
	}
	p.numDirs = int(binary.LittleEndian.Uint32(o[optNumberOfRvaAndSize:]))
	if p.numDirs > (optSize-sizeofOptHeaderFixed)/sizeofDataDirectory {
		return formatErr(input, int64(p.optOff+optNumberOfRvaAndSize), "optional header.NumberOfRvaAndSizes", nil, "%d directories do not fit SizeOfOptionalHeader %d", p.numDirs, optSize)
	}
	if p.numDirs > certTableIndex {
		d := o[sizeofOptHeaderFixed+certTableIndex*sizeofDataDirectory:]
		p.CertTable = [2]uint32{binary.LittleEndian.Uint32(d), binary.LittleEndian.Uint32(d[4:])}
	}
	return nil
}

func (p *PE) parseSections(input string, b []byte) error {
	p.secTabOff = p.optOff + int(binary.LittleEndian.Uint16(b[p.coffOff+16:]))
	if p.NumberOfSections > maxSections {
		return formatErr(input, int64(p.coffOff+2), "COFF header.NumberOfSections", nil, "%d exceeds %d", p.NumberOfSections, maxSections)
	}
	end := p.secTabOff + p.NumberOfSections*SizeofSectionHeader
	if end > len(b) || uint64(end) > uint64(p.SizeOfHeaders) {
		return formatErr(input, int64(p.secTabOff), "section table", nil, "ends at 0x%x, past SizeOfHeaders 0x%x or the file (0x%x bytes)", end, p.SizeOfHeaders, len(b))
	}
	for i := range p.NumberOfSections {
		off := p.secTabOff + i*SizeofSectionHeader
		s := decodeSectionHeader(b[off : off+SizeofSectionHeader])
		if uint64(s.PointerToRawData)+uint64(s.SizeOfRawData) > uint64(len(b)) {
			return formatErr(input, int64(off+16), fmt.Sprintf("section[%d] %q.SizeOfRawData", i, s.Name), nil, "raw data 0x%x+0x%x past end of file 0x%x", s.PointerToRawData, s.SizeOfRawData, len(b))
		}
		p.Sections = append(p.Sections, s)
	}
	return p.checkOverlaps(input)
}

// checkOverlaps rejects sections sharing memory or file space.
func (p *PE) checkOverlaps(input string) error {
	for i, a := range p.Sections {
		for j, c := range p.Sections[:i] {
			if rangesOverlap(a.VirtualAddress, max(a.VirtualSize, 1), c.VirtualAddress, max(c.VirtualSize, 1)) {
				return formatErr(input, int64(p.secTabOff+i*SizeofSectionHeader+12), fmt.Sprintf("section[%d] %q.VirtualAddress", i, a.Name), ErrOverlap, "0x%x+0x%x overlaps section[%d] %q at 0x%x+0x%x", a.VirtualAddress, a.VirtualSize, j, c.Name, c.VirtualAddress, c.VirtualSize)
			}
			if a.SizeOfRawData > 0 && c.SizeOfRawData > 0 && rangesOverlap(a.PointerToRawData, a.SizeOfRawData, c.PointerToRawData, c.SizeOfRawData) {
				return formatErr(input, int64(p.secTabOff+i*SizeofSectionHeader+20), fmt.Sprintf("section[%d] %q.PointerToRawData", i, a.Name), ErrOverlap, "0x%x+0x%x overlaps section[%d] %q", a.PointerToRawData, a.SizeOfRawData, j, c.Name)
			}
		}
	}
	return nil
}

func rangesOverlap(a, alen, b, blen uint32) bool {
	return uint64(a) < uint64(b)+uint64(blen) && uint64(b) < uint64(a)+uint64(alen)
}

func pow2(v uint32) bool { return v != 0 && v&(v-1) == 0 }

func decodeSectionHeader(h []byte) SectionHeader {
	le := binary.LittleEndian
	return SectionHeader{
		Name:                 strings.TrimRight(string(h[0:8]), "\x00"),
		VirtualSize:          le.Uint32(h[8:]),
		VirtualAddress:       le.Uint32(h[12:]),
		SizeOfRawData:        le.Uint32(h[16:]),
		PointerToRawData:     le.Uint32(h[20:]),
		PointerToRelocations: le.Uint32(h[24:]),
		PointerToLinenumbers: le.Uint32(h[28:]),
		NumberOfRelocations:  le.Uint16(h[32:]),
		NumberOfLinenumbers:  le.Uint16(h[34:]),
		Characteristics:      le.Uint32(h[36:]),
	}
}

// MarshalBinary encodes s as a 40-byte section table entry.
func (s SectionHeader) MarshalBinary() ([]byte, error) {
	if len(s.Name) > 8 {
		return nil, fmt.Errorf("section name %q longer than 8 bytes", s.Name)
	}
	h := make([]byte, SizeofSectionHeader)
	copy(h[0:8], s.Name)
	le := binary.LittleEndian
	le.PutUint32(h[8:], s.VirtualSize)
	le.PutUint32(h[12:], s.VirtualAddress)
	le.PutUint32(h[16:], s.SizeOfRawData)
	le.PutUint32(h[20:], s.PointerToRawData)
	le.PutUint32(h[24:], s.PointerToRelocations)
	le.PutUint32(h[28:], s.PointerToLinenumbers)
	le.PutUint16(h[32:], s.NumberOfRelocations)
	le.PutUint16(h[34:], s.NumberOfLinenumbers)
	le.PutUint32(h[36:], s.Characteristics)
	return h, nil
}

// SectionTableOffset is the file offset of the section table.
func (p *PE) SectionTableOffset() int { return p.secTabOff }

// Section returns the section header called name.
func (p *PE) Section(name string) (SectionHeader, bool) {
	for _, s := range p.Sections {
		if s.Name == name {
			return s, true
		}
	}
	return SectionHeader{}, false
}

// Checksum computes the PE image checksum of b (the optional header
// CheckSum field, §3.4.2; the algorithm of imagehlp's CheckSumMappedFile):
// the one's-complement sum of the file's 16-bit little-endian words, with
// the 4-byte CheckSum field at checksumOff read as zero, folded to 16 bits,
// plus the file length.
func Checksum(b []byte, checksumOff int) uint32 {
	sum := wordSum(b)
	if checksumOff >= 0 && checksumOff+4 <= len(b) {
		// Replace the words overlapping the field by their value with the
		// field zeroed.
		lo, hi := checksumOff&^1, min((checksumOff+4+1)&^1, len(b)&^1)
		w := make([]byte, hi-lo)
		copy(w, b[lo:hi])
		clear(w[checksumOff-lo : checksumOff-lo+4])
		sum = sum - wordSum(b[lo:hi]) + wordSum(w)
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint32(sum) + uint32(len(b))
}

// wordSum adds the 16-bit little-endian words of b (a trailing odd byte
// counts as a word with a zero high byte) without folding carries.
func wordSum(b []byte) uint64 {
	var sum uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		sum += v&0xffff + v>>16&0xffff + v>>32&0xffff + v>>48
	}
	for ; i+1 < len(b); i += 2 {
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
	}
	if i < len(b) {
		sum += uint64(b[i])
	}
	return sum
}

// SetChecksum recomputes the optional header CheckSum of a PE32+ image in
// place, e.g. after a signature was appended (the field is outside the
// Authenticode hash, so the signature stays valid).
func SetChecksum(input string, b []byte) error {
	p, err := ParsePE(input, b)
	if err != nil {
		return err
	}
	off := p.optOff + optCheckSum
	binary.LittleEndian.PutUint32(b[off:], Checksum(b, off))
	return nil
}
