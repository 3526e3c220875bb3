// Package ovmftest builds synthetic OVMF firmware images with the same
// encoders the ovmf parsers mirror, for tests of ovmf and measure.
package ovmftest

import (
	"fmt"

	"github.com/mkcvm/mkcvm/ovmf"
)

// PlaceFooterTable encodes t and writes it into img so that it ends
// ovmf.FooterTableEndGap bytes before the end of img. It returns the file
// offset of the first byte of the table.
func PlaceFooterTable(img []byte, t *ovmf.FooterTable) (int, error) {
	b, err := t.MarshalBinary()
	if err != nil {
		return 0, err
	}
	start := len(img) - ovmf.FooterTableEndGap - len(b)
	if start < 0 {
		return 0, fmt.Errorf("placing footer table: 0x%x bytes do not fit a 0x%x-byte image", len(b), len(img))
	}
	copy(img[start:], b)
	return start, nil
}

// Options describe a synthetic firmware image. The zero value gives a
// 64 KiB image laid out like an edk2 AmdSevX64 build (see DefaultSections).
type Options struct {
	// Size of the image in bytes (default 64 KiB; a multiple of 4 KiB).
	Size int
	// Seed selects the pseudo-random filler bytes of the image.
	Seed byte
	// Sections are the SEV metadata sections (default DefaultSections()).
	Sections []ovmf.SEVMetadataSection
	// NoSEVMetadata leaves out the SEV metadata entry.
	NoSEVMetadata bool
	// NoFooter leaves out the whole footer table.
	NoFooter bool
	// APResetEIP is the SEV-ES reset block value (default 0x80b004).
	APResetEIP uint32
	// HashTable is the SEV hash table entry (default 0x810c00, 0x400).
	HashTable *ovmf.SEVHashTableEntry
	// Extra footer entries, placed before the standard ones.
	Extra []ovmf.FooterEntry
}

// DefaultSections are the SEV metadata sections of edk2-stable202405
// OvmfPkg/AmdSev/AmdSevX64.dsc.
func DefaultSections() []ovmf.SEVMetadataSection {
	return []ovmf.SEVMetadataSection{
		{GPA: 0x800000, Size: 0x9000, Type: ovmf.SNPSecMemory},
		{GPA: 0x80a000, Size: 0x3000, Type: ovmf.SNPSecMemory},
		{GPA: 0x80d000, Size: 0x1000, Type: ovmf.SNPSecrets},
		{GPA: 0x80e000, Size: 0x1000, Type: ovmf.SNPCPUID},
		{GPA: 0x80f000, Size: 0x1000, Type: ovmf.SNPSVSMCAA},
		{GPA: 0x810000, Size: 0x1000, Type: ovmf.SNPKernelHashes},
		{GPA: 0x811000, Size: 0xf000, Type: ovmf.SNPSecMemory},
	}
}

// metadataFromEnd is where Firmware puts the SEV metadata: 0x800 bytes
// before the end of the image.
const metadataFromEnd = 0x800

// Firmware builds a synthetic OVMF image with a footer table, SEV metadata,
// SEV-ES reset block and SEV hash table entry, using the ovmf encoders.
func Firmware(o Options) ([]byte, error) {
	if o.Size == 0 {
		o.Size = 64 << 10
	}
	if o.Size%ovmf.PageSize != 0 || o.Size < ovmf.PageSize {
		return nil, fmt.Errorf("synthetic firmware size 0x%x is not a multiple of 4 KiB", o.Size)
	}
	if o.Sections == nil {
		o.Sections = DefaultSections()
	}
	if o.APResetEIP == 0 {
		o.APResetEIP = 0x80b004
	}
	if o.HashTable == nil {
		o.HashTable = &ovmf.SEVHashTableEntry{GPA: 0x810c00, Size: 0x400}
	}
	img := make([]byte, o.Size)
	x := uint32(o.Seed) + 1
	for i := range img {
		x = x*1664525 + 1013904223
		img[i] = byte(x >> 24)
	}
	if o.NoFooter {
		return img, nil
	}
	entries := append([]ovmf.FooterEntry(nil), o.Extra...)
	if !o.NoSEVMetadata {
		md, err := (&ovmf.SEVMetadata{Version: ovmf.SEVMetadataVersion, Sections: o.Sections}).MarshalBinary()
		if err != nil {
			return nil, err
		}
		copy(img[o.Size-metadataFromEnd:], md)
		entries = append(entries, ovmf.FooterEntry{GUID: ovmf.SEVMetadataGUID, Data: le32(metadataFromEnd)})
	}
	ht, _ := o.HashTable.MarshalBinary()
	rb, _ := ovmf.SEVESResetBlock{APResetEIP: o.APResetEIP}.MarshalBinary()
	entries = append(entries, ovmf.FooterEntry{GUID: ovmf.SEVHashTableGUID, Data: ht},
		ovmf.FooterEntry{GUID: ovmf.SEVESResetBlockGUID, Data: rb})
	if _, err := PlaceFooterTable(img, &ovmf.FooterTable{Entries: entries}); err != nil {
		return nil, err
	}
	return img, nil
}

func le32(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }
