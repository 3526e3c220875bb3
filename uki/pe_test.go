package uki_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/uki"
)

// fakePE builds a minimal PE32+ image: DOS header with e_lfanew 0x40, COFF
// header, a 240-byte optional header with 16 data directories, one section
// table entry per name, SizeOfHeaders 0x400 and one 0x200-byte raw block
// per section at VirtualAddress 0x1000*(i+1).
func fakePE(machine uint16, names ...string) []byte {
	const lfanew, optSize, hdrs = 0x40, 240, 0x400
	b := make([]byte, hdrs+0x200*len(names))
	copy(b, "MZ")
	le := binary.LittleEndian
	le.PutUint32(b[0x3c:], lfanew)
	copy(b[lfanew:], "PE\x00\x00")
	c := b[lfanew+4:]
	le.PutUint16(c[0:], machine)
	le.PutUint16(c[2:], uint16(len(names)))
	le.PutUint16(c[16:], optSize)
	o := c[20:]
	le.PutUint16(o[0:], 0x20b)
	le.PutUint32(o[32:], 0x1000) // SectionAlignment
	le.PutUint32(o[36:], 0x200)  // FileAlignment
	le.PutUint32(o[56:], uint32(0x1000*(len(names)+1)))
	le.PutUint32(o[60:], hdrs)
	le.PutUint16(o[68:], 10) // EFI application
	le.PutUint32(o[108:], 16)
	for i, n := range names {
		h, _ := uki.SectionHeader{Name: n, VirtualSize: 0x10, VirtualAddress: uint32(0x1000 * (i + 1)),
			SizeOfRawData: 0x200, PointerToRawData: uint32(hdrs + 0x200*i), Characteristics: uki.ScnInitializedReadOnly}.MarshalBinary()
		copy(o[optSize+40*i:], h)
		b[hdrs+0x200*i] = byte(i + 1)
	}
	return b
}

// setSection overwrites section i's table entry.
func setSection(b []byte, i int, s uki.SectionHeader) {
	h, _ := s.MarshalBinary()
	copy(b[0x40+4+20+240+40*i:], h)
}

func TestParsePE(t *testing.T) {
	p, err := uki.ParsePE("fake", fakePE(uki.MachineAMD64, ".text", ".data"))
	if err != nil {
		t.Fatal(err)
	}
	if p.NumberOfSections != 2 || p.Sections[1].Name != ".data" || p.Sections[1].PointerToRawData != 0x600 || p.SectionAlignment != 0x1000 {
		t.Errorf("parsed %+v", p)
	}
}

func TestParsePEErrors(t *testing.T) {
	overlapVA := fakePE(uki.MachineAMD64, ".a", ".b")
	setSection(overlapVA, 1, uki.SectionHeader{Name: ".b", VirtualSize: 0x10, VirtualAddress: 0x1008, SizeOfRawData: 0x200, PointerToRawData: 0x600})
	overlapRaw := fakePE(uki.MachineAMD64, ".a", ".b")
	setSection(overlapRaw, 1, uki.SectionHeader{Name: ".b", VirtualSize: 0x10, VirtualAddress: 0x2000, SizeOfRawData: 0x200, PointerToRawData: 0x500})
	pastEOF := fakePE(uki.MachineAMD64, ".a")
	setSection(pastEOF, 0, uki.SectionHeader{Name: ".a", VirtualSize: 0x10, VirtualAddress: 0x1000, SizeOfRawData: 0x1000, PointerToRawData: 0x400})
	badAlign := fakePE(uki.MachineAMD64, ".a")
	binary.LittleEndian.PutUint32(badAlign[0x40+24+36:], 0x300)
	for _, tc := range []struct {
		name, field string
		in          []byte
		sentinel    error
	}{
		{"empty", "e_magic", nil, uki.ErrNotPE},
		{"ELF", "e_magic", []byte("\x7fELF\x02\x01\x01" + string(make([]byte, 100))), uki.ErrNotPE},
		{"bad lfanew", "e_lfanew", append([]byte("MZ"), make([]byte, 0x3e)...), uki.ErrNotPE},
		{"arm64", "COFF header.Machine", fakePE(0xaa64, ".a"), uki.ErrWrongMachine},
		{"overlapping VAs", "section[1] \".b\".VirtualAddress", overlapVA, uki.ErrOverlap},
		{"overlapping raw data", "section[1] \".b\".PointerToRawData", overlapRaw, uki.ErrOverlap},
		{"raw data past EOF", "SizeOfRawData", pastEOF, nil},
		{"file alignment", "FileAlignment", badAlign, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := uki.ParsePE("fake.efi", tc.in)
			var fe *uki.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err = %v, want *FormatError", err)
			}
			if !contains(fe.Field, tc.field) || fe.Input != "fake.efi" {
				t.Errorf("err = %v, want field containing %q", err, tc.field)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("err = %v, want %v", err, tc.sentinel)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func FuzzParsePE(f *testing.F) {
	f.Add(fakePE(uki.MachineAMD64, ".text", ".data"))
	f.Add(fakePE(uki.MachineAMD64))
	f.Add(fakePE(0x14c, ".a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		p, err := uki.ParsePE("fuzz", b)
		if err != nil {
			return
		}
		// Round trip: every decoded section header re-encodes to its bytes
		// (names compare up to their NUL padding).
		for i, s := range p.Sections {
			enc, err := s.MarshalBinary()
			if err != nil {
				t.Fatalf("section %d: %v", i, err)
			}
			off := p.SectionTableOffset() + i*uki.SizeofSectionHeader
			if !bytes.Equal(enc[8:], b[off+8:off+uki.SizeofSectionHeader]) || strings.TrimRight(string(b[off:off+8]), "\x00") != s.Name {
				t.Fatalf("section %d: % x does not round-trip to % x", i, enc, b[off:off+uki.SizeofSectionHeader])
			}
		}
		// Assembling onto any parsed image either fails cleanly or yields
		// an image with one more section.
		out, err := uki.Assemble("fuzz", b, []uki.Section{{Name: ".osrel", Data: []byte("ID=x\n")}})
		if err != nil {
			return
		}
		q, err := uki.ParsePE("assembled", out)
		if err != nil || q.NumberOfSections != p.NumberOfSections+1 {
			t.Fatalf("assembled image: %v, %d sections", err, q.NumberOfSections)
		}
	})
}
