package uki

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Section names the systemd stub looks up (UAPI UKI spec, "UKI format").
const (
	SectionOSRel   = ".osrel"
	SectionCmdline = ".cmdline"
	SectionUname   = ".uname"
	SectionInitrd  = ".initrd"
	SectionLinux   = ".linux"
)

// MinSectionAlignment is the memory alignment Assemble gives every added
// section: the larger of the stub's SectionAlignment and one 4 KiB page,
// so the kernel and initrd start page aligned as ukify lays them out.
const MinSectionAlignment = 4096

// Section is one section Assemble appends. Data is the exact payload; the
// section's VirtualSize is len(Data), which is what the stub measures.
type Section struct {
	Name string
	Data []byte
}

// Assemble appends secs, in order, to the PE32+ stub and returns the new
// image. Each section starts at the next aligned virtual address after
// the stub's image and at the next FileAlignment boundary after its raw
// data; the headers (NumberOfSections, SizeOfImage,
// SizeOfInitializedData, CheckSum) are updated. The result depends only
// on the inputs.
//
// The stub must be an unsigned x86-64 PE32+ image without trailing data
// and with room for the new section headers. A .linux section must itself
// be an x86-64 PE image (an EFI-stub kernel).
func Assemble(stubName string, stub []byte, secs []Section) ([]byte, error) {
	p, err := ParsePE(stubName, stub)
	if err != nil {
		return nil, err
	}
	if p.CertTable[1] != 0 {
		return nil, formatErr(stubName, int64(p.optOff+sizeofOptHeaderFixed+certTableIndex*sizeofDataDirectory), "optional header.DataDirectory[4] (Certificate Table)", ErrSigned, "size 0x%x: assemble from an unsigned stub and sign the UKI afterwards", p.CertTable[1])
	}
	fileEnd, err := p.checkLayout(stubName, stub, len(secs))
	if err != nil {
		return nil, err
	}
	if err := checkSections(stubName, p, secs); err != nil {
		return nil, err
	}
	return p.appendSections(stub, fileEnd, secs)
}

// checkLayout verifies that the stub ends with its last section and that
// its header area can take n more section headers.
func (p *PE) checkLayout(input string, b []byte, n int) (int, error) {
	fileEnd := int(p.SizeOfHeaders)
	firstRaw := len(b)
	for _, s := range p.Sections {
		if s.SizeOfRawData == 0 {
			continue
		}
		fileEnd = max(fileEnd, int(s.PointerToRawData+s.SizeOfRawData))
		firstRaw = min(firstRaw, int(s.PointerToRawData))
	}
	if len(b) > fileEnd && p.symbolTableEnd(b) == len(b) && int(p.PointerToSymbolTable) == fileEnd {
		// A trailing COFF symbol and string table (§5.4, deprecated for
		// images): Assemble drops it, as strip(1) would.
		return fileEnd, p.checkHeaderRoom(input, b, n, firstRaw)
	}
	if len(b) != fileEnd {
		return 0, formatErr(input, int64(fileEnd), "end of last section", nil, "0x%x bytes of trailing data (signature or overlay) after the last section", len(b)-fileEnd)
	}
	return fileEnd, p.checkHeaderRoom(input, b, n, firstRaw)
}

// symbolTableEnd returns the end of the COFF symbol and string tables, or
// -1 when there are none or they do not fit b.
func (p *PE) symbolTableEnd(b []byte) int {
	strOff := uint64(p.PointerToSymbolTable) + uint64(p.NumberOfSymbols)*sizeofCOFFSymbol
	if p.PointerToSymbolTable == 0 || strOff+4 > uint64(len(b)) {
		return -1
	}
	return int(strOff) + int(binary.LittleEndian.Uint32(b[strOff:]))
}

func (p *PE) checkHeaderRoom(input string, b []byte, n, firstRaw int) error {
	tabEnd := p.secTabOff + p.NumberOfSections*SizeofSectionHeader
	newEnd := tabEnd + n*SizeofSectionHeader
	if p.NumberOfSections+n > maxSections || newEnd > int(p.SizeOfHeaders) || newEnd > firstRaw {
		return formatErr(input, int64(tabEnd), "section table", nil, "no room for %d more section headers before SizeOfHeaders 0x%x", n, p.SizeOfHeaders)
	}
	for i := tabEnd; i < newEnd; i++ {
		if b[i] != 0 {
			return formatErr(input, int64(i), "section table", nil, "header padding after the last section header is not zero")
		}
	}
	return nil
}

func checkSections(stubName string, p *PE, secs []Section) error {
	seen := map[string]bool{}
	for _, s := range p.Sections {
		seen[s.Name] = true
	}
	for i, s := range secs {
		switch {
		case s.Name == "" || len(s.Name) > 8:
			return fmt.Errorf("section[%d] %q: name must be 1 to 8 bytes", i, s.Name)
		case seen[s.Name]:
			return fmt.Errorf("section[%d] %q: %w: %s already has a section with that name", i, s.Name, ErrOverlap, stubName)
		case len(s.Data) == 0:
			return fmt.Errorf("section[%d] %q: empty payload", i, s.Name)
		case uint64(len(s.Data)) > 1<<31:
			return fmt.Errorf("section[%d] %q: payload of %d bytes exceeds 2 GiB", i, s.Name, len(s.Data))
		}
		seen[s.Name] = true
		if s.Name == SectionLinux {
			if _, err := ParsePE(SectionLinux+" (kernel)", s.Data); err != nil {
				return fmt.Errorf("kernel is not an x86-64 EFI-stub PE image: %w", err)
			}
		}
	}
	return nil
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func (p *PE) appendSections(stub []byte, fileEnd int, secs []Section) ([]byte, error) {
	valign := uint64(max(p.SectionAlignment, MinSectionAlignment))
	falign := uint64(p.FileAlignment)
	va := uint64(p.SizeOfImage)
	for _, s := range p.Sections {
		va = max(va, uint64(s.VirtualAddress)+uint64(s.VirtualSize))
	}
	va = alignUp(va, valign)
	raw := alignUp(uint64(fileEnd), falign)
	var hdrs []SectionHeader
	for _, s := range secs {
		n := uint64(len(s.Data))
		hdrs = append(hdrs, SectionHeader{
			Name: s.Name, VirtualSize: uint32(n), VirtualAddress: uint32(va),
			SizeOfRawData: uint32(alignUp(n, falign)), PointerToRawData: uint32(raw),
			Characteristics: ScnInitializedReadOnly,
		})
		raw += alignUp(n, falign)
		va = alignUp(va+n, valign)
		if va > 1<<32-1 || raw > 1<<32-1 {
			return nil, errors.New("assembled image exceeds the 4 GiB PE32+ limit")
		}
	}
	out := make([]byte, raw)
	copy(out, stub)
	le := binary.LittleEndian
	var initData uint64
	for i, h := range hdrs {
		enc, err := h.MarshalBinary()
		if err != nil {
			return nil, err
		}
		copy(out[p.secTabOff+(p.NumberOfSections+i)*SizeofSectionHeader:], enc)
		copy(out[h.PointerToRawData:], secs[i].Data)
		initData += uint64(h.SizeOfRawData)
	}
	le.PutUint16(out[p.coffOff+2:], uint16(p.NumberOfSections+len(hdrs)))
	le.PutUint32(out[p.coffOff+8:], 0)  // PointerToSymbolTable: symbol table dropped
	le.PutUint32(out[p.coffOff+12:], 0) // NumberOfSymbols
	le.PutUint32(out[p.optOff+optSizeOfImage:], uint32(alignUp(va, uint64(p.SectionAlignment))))
	sid := uint64(le.Uint32(out[p.optOff+optSizeOfInitData:])) + initData
	le.PutUint32(out[p.optOff+optSizeOfInitData:], uint32(min(sid, 1<<32-1)))
	le.PutUint32(out[p.optOff+optCheckSum:], Checksum(out, p.optOff+optCheckSum))
	return out, nil
}
