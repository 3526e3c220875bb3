package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/mkcvm/mkcvm/ovmf"
)

// GPT layout (UEFI 2.10 §5.3.2 GPT Header, §5.3.3 GPT Partition Entry
// Array) and the EV_EFI_GPT_EVENT data (TCG PFP §10.4.7 UEFI_GPT_DATA).
const (
	gptSectorSize         = 512
	gptHeaderLBA          = 1
	SizeofGPTHeader       = 92 // EFI_PARTITION_TABLE_HEADER (HeaderSize of rev 1.0)
	gptRevision1          = 0x00010000
	gptHdrRevision        = 8
	gptHdrHeaderSize      = 12
	gptHdrPartEntryLBA    = 72
	gptHdrNumPartEntries  = 80
	gptHdrSizeOfPartEntry = 84
	minGPTPartEntrySize   = 128
	maxGPTPartEntries     = 4096
	gptEntryStartingLBA   = 32
	gptEntryEndingLBA     = 40
	gptEntryUniqueGUID    = 16
)

// GPTPartition is one used entry of a partition entry array.
type GPTPartition struct {
	Number     uint32 // 1-based index in the array
	TypeGUID   ovmf.GUID
	UniqueGUID ovmf.GUID
	FirstLBA   uint64
	LastLBA    uint64
	Raw        []byte // the entry as stored (SizeOfPartitionEntry bytes)
}

// GPT is the primary GPT of a disk as edk2 reads it for PCR 5.
type GPT struct {
	Header     []byte // the first SizeofGPTHeader bytes of LBA 1
	Partitions []GPTPartition
}

// ParseGPT reads the primary GPT from the start of a disk image (512-byte
// sectors). disk needs to hold at least the header and the partition entry
// array. input names the image in errors.
func ParseGPT(input string, disk []byte) (*GPT, error) {
	fail := func(off int, field, format string, args ...any) error {
		return &ovmf.FormatError{Input: input, Offset: int64(off), Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	h0 := gptHeaderLBA * gptSectorSize
	if len(disk) < h0+SizeofGPTHeader || !bytes.Equal(disk[h0:h0+8], []byte("EFI PART")) {
		return nil, fail(h0, "EFI_PARTITION_TABLE_HEADER.Signature", "want \"EFI PART\" at LBA 1")
	}
	h := disk[h0 : h0+SizeofGPTHeader]
	le := binary.LittleEndian
	if r := le.Uint32(h[gptHdrRevision:]); r != gptRevision1 {
		return nil, fail(h0+gptHdrRevision, "EFI_PARTITION_TABLE_HEADER.Revision", "0x%08x, want 0x00010000", r)
	}
	if hs := le.Uint32(h[gptHdrHeaderSize:]); hs < SizeofGPTHeader || hs > gptSectorSize {
		return nil, fail(h0+gptHdrHeaderSize, "EFI_PARTITION_TABLE_HEADER.HeaderSize", "%d, want 92..512", hs)
	}
	lba, n, esz := le.Uint64(h[gptHdrPartEntryLBA:]), uint64(le.Uint32(h[gptHdrNumPartEntries:])), uint64(le.Uint32(h[gptHdrSizeOfPartEntry:]))
	if esz < minGPTPartEntrySize || esz&(esz-1) != 0 || n > maxGPTPartEntries {
		return nil, fail(h0+gptHdrNumPartEntries, "EFI_PARTITION_TABLE_HEADER.NumberOfPartitionEntries/SizeOfPartitionEntry", "%d entries of %d bytes: want <= %d entries of a power of two >= 128 bytes", n, esz, maxGPTPartEntries)
	}
	if lba > uint64(len(disk))/gptSectorSize || lba*gptSectorSize+n*esz > uint64(len(disk)) {
		return nil, fail(h0+gptHdrPartEntryLBA, "EFI_PARTITION_TABLE_HEADER.PartitionEntryLBA", "array at LBA %d (%d x %d bytes) is past the %d bytes given", lba, n, esz, len(disk))
	}
	g := &GPT{Header: bytes.Clone(h)}
	for i := range n {
		off := lba*gptSectorSize + i*esz
		e := disk[off : off+esz]
		if ovmf.GUID(e[:16]) == (ovmf.GUID{}) {
			continue
		}
		g.Partitions = append(g.Partitions, GPTPartition{
			Number: uint32(i + 1), TypeGUID: ovmf.GUID(e[:16]), UniqueGUID: ovmf.GUID(e[gptEntryUniqueGUID : gptEntryUniqueGUID+16]),
			FirstLBA: le.Uint64(e[gptEntryStartingLBA:]), LastLBA: le.Uint64(e[gptEntryEndingLBA:]), Raw: bytes.Clone(e),
		})
	}
	return g, nil
}

// EventData encodes UEFI_GPT_DATA (PFP §10.4.7) as edk2's Tcg2Dxe
// (Tcg2MeasureGptTable) measures it: the 92-byte header, NumberOfPartitions
// as a UINTN (8 bytes on x64), then each used entry in array order.
func (g *GPT) EventData() []byte {
	b := bytes.Clone(g.Header)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(g.Partitions)))
	for _, p := range g.Partitions {
		b = append(b, p.Raw...)
	}
	return b
}
