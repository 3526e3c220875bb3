package ovmf

import (
	"encoding/binary"
	"fmt"
)

// SEVESResetBlockGUID identifies the SEV-ES reset block in the footer table
// (edk2-stable202405 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm,
// "sevEsResetBlockStart"). Its data is one UINT32: the AP reset vector
// (CS base in the high 16 bits, IP in the low 16 bits).
var SEVESResetBlockGUID = MustParseGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")

// SizeofSEVESResetBlock is the size of the reset block data.
const SizeofSEVESResetBlock = 4

// SEVESResetBlock is the parsed SEV-ES reset block.
type SEVESResetBlock struct {
	// APResetEIP is where application processors start; QEMU derives their
	// initial CS base (eip & 0xffff0000) and IP (eip & 0xffff) from it.
	APResetEIP uint32
}

// ParseSEVESResetBlock reads the SEV-ES reset block from the footer table.
// It returns a *FormatError wrapping ErrNotFound when the entry is absent.
func ParseSEVESResetBlock(input string, t *FooterTable) (SEVESResetBlock, error) {
	e, ok := t.Lookup(SEVESResetBlockGUID)
	if !ok {
		return SEVESResetBlock{}, &FormatError{Input: input, Field: "footer table",
			Reason: fmt.Sprintf("no SEV-ES reset block entry %s", SEVESResetBlockGUID), Err: ErrNotFound}
	}
	if len(e.Data) != SizeofSEVESResetBlock {
		return SEVESResetBlock{}, formatErr(input, e.Offset, "SEV-ES reset block", "data is %d bytes, want %d", len(e.Data), SizeofSEVESResetBlock)
	}
	return SEVESResetBlock{APResetEIP: binary.LittleEndian.Uint32(e.Data)}, nil
}

// MarshalBinary encodes the reset block data.
func (r SEVESResetBlock) MarshalBinary() ([]byte, error) {
	return binary.LittleEndian.AppendUint32(nil, r.APResetEIP), nil
}

// SEVHashTableGUID identifies the footer table entry that gives the
// guest-physical address and size of the area where QEMU places the SEV
// kernel/initrd/cmdline hash table (ResetVectorVtf0.asm, "SEV Hash Table",
// PcdQemuHashTableBase/Size). Firmware without measured direct boot has
// zeros here.
var SEVHashTableGUID = MustParseGUID("7255371f-3a3b-4b04-927b-1da6efa8d454")

// SizeofSEVHashTableEntry is the size of the entry data (base, size).
const SizeofSEVHashTableEntry = 8

// SEVHashTableEntry is the parsed SEV hash table entry.
type SEVHashTableEntry struct {
	GPA  uint32 // guest-physical address of the hash table; 0 = unsupported
	Size uint32 // size of the reserved area
}

// Supported reports whether the firmware reserves a hash table area.
func (h SEVHashTableEntry) Supported() bool { return h.GPA != 0 }

// ParseSEVHashTableEntry reads the SEV hash table entry. It returns a
// *FormatError wrapping ErrNotFound when the entry is absent.
func ParseSEVHashTableEntry(input string, t *FooterTable) (SEVHashTableEntry, error) {
	e, ok := t.Lookup(SEVHashTableGUID)
	if !ok {
		return SEVHashTableEntry{}, &FormatError{Input: input, Field: "footer table",
			Reason: fmt.Sprintf("no SEV hash table entry %s", SEVHashTableGUID), Err: ErrNotFound}
	}
	if len(e.Data) != SizeofSEVHashTableEntry {
		return SEVHashTableEntry{}, formatErr(input, e.Offset, "SEV hash table entry", "data is %d bytes, want %d", len(e.Data), SizeofSEVHashTableEntry)
	}
	h := SEVHashTableEntry{GPA: binary.LittleEndian.Uint32(e.Data[0:4]), Size: binary.LittleEndian.Uint32(e.Data[4:8])}
	if uint64(h.GPA)+uint64(h.Size) > FourGiB {
		return SEVHashTableEntry{}, formatErr(input, e.Offset+4, "SEV hash table entry.Size", "area 0x%x+0x%x ends beyond 4 GiB", h.GPA, h.Size)
	}
	return h, nil
}

// MarshalBinary encodes the entry data.
func (h SEVHashTableEntry) MarshalBinary() ([]byte, error) {
	b := binary.LittleEndian.AppendUint32(nil, h.GPA)
	return binary.LittleEndian.AppendUint32(b, h.Size), nil
}
