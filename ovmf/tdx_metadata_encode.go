package ovmf

import (
	"encoding/binary"
	"fmt"
)

// MarshalBinary encodes m as a TDX metadata block: TdxMetadataGuid, the
// descriptor and its sections (the layout DecodeTDXMetadata reads).
// Offset is ignored.
func (m *TDXMetadata) MarshalBinary() ([]byte, error) {
	if len(m.Sections) == 0 || len(m.Sections) > maxTDXSections {
		return nil, fmt.Errorf("encoding TDX metadata: %d sections, want 1..%d", len(m.Sections), maxTDXSections)
	}
	b := make([]byte, 0, SizeofGUID+SizeofTDXMetadataDescriptor+len(m.Sections)*SizeofTDXMetadataSection)
	b = append(b, TDXMetadataGUID[:]...)
	b = append(b, TDXMetadataSignature[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(SizeofTDXMetadataDescriptor+len(m.Sections)*SizeofTDXMetadataSection))
	b = binary.LittleEndian.AppendUint32(b, m.Version)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(m.Sections)))
	for _, s := range m.Sections {
		b = binary.LittleEndian.AppendUint32(b, s.DataOffset)
		b = binary.LittleEndian.AppendUint32(b, s.RawDataSize)
		b = binary.LittleEndian.AppendUint64(b, s.MemoryAddress)
		b = binary.LittleEndian.AppendUint64(b, s.MemoryDataSize)
		b = binary.LittleEndian.AppendUint32(b, uint32(s.Type))
		b = binary.LittleEndian.AppendUint32(b, s.Attributes)
	}
	return b, nil
}

// TDXMetadataOffsetEntry returns the footer-table entry that points at a
// TDX metadata block whose GUID starts at file offset guidOff of an image
// of imageLen bytes (the entry's UINT32 is the distance from the end of the
// image to the descriptor).
func TDXMetadataOffsetEntry(imageLen int, guidOff int64) (FooterEntry, error) {
	fromEnd := int64(imageLen) - guidOff - SizeofGUID
	if guidOff < 0 || fromEnd < 0 || fromEnd > 0xffffffff {
		return FooterEntry{}, fmt.Errorf("encoding TDX metadata offset: GUID at 0x%x outside the 0x%x-byte image", guidOff, imageLen)
	}
	return FooterEntry{GUID: TDXMetadataOffsetGUID, Data: binary.LittleEndian.AppendUint32(nil, uint32(fromEnd))}, nil
}
