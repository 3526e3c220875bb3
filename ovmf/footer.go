package ovmf

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// The OVMF "GUIDed structure table" sits at the end of the reset-vector
// area, right before the last 32 bytes of the image (which hold the x86
// reset jump at 0xfffffff0). It is read backwards from its footer entry.
// Layout of each entry, lowest address first: Data, then a UINT16 Length
// (Data + 18), then the entry GUID. The footer entry's Length covers the
// whole table including itself.
//
// Source: edk2 OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm
// (edk2-stable202405, "guidedStructureStart" .. "guidedStructureEnd").
const (
	// SizeofFooterEntryHeader is the UINT16 length plus the GUID that
	// trail every table entry.
	SizeofFooterEntryHeader = 2 + SizeofGUID
	// FooterTableEndGap is the distance from the end of the table (the end
	// of the footer entry) to the end of the image.
	FooterTableEndGap = 0x20
)

// FooterGUID identifies the footer entry of the table
// (ResetVectorVtf0.asm: "OVMF_TABLE_FOOTER_GUID").
var FooterGUID = MustParseGUID("96b582de-1fb2-45f7-baea-a366c55a082d")

// FooterEntry is one entry of the OVMF footer GUID table.
type FooterEntry struct {
	GUID   GUID
	Data   []byte // entry payload (without the length and GUID)
	Offset int64  // file offset of Data
}

// FooterTable is the parsed OVMF footer GUID table. Entries are in file
// order (ascending Offset) and exclude the footer entry itself.
type FooterTable struct {
	Entries []FooterEntry
}

// ParseFooterTable parses the footer GUID table at the end of the firmware
// image fw. input names the image in errors. It returns a *FormatError
// wrapping ErrNoFooterTable when the footer GUID is absent, and a
// *FormatError for any malformed entry: a length smaller than the entry
// header, an entry reaching outside the table or the image, leftover bytes
// or a duplicate GUID.
func ParseFooterTable(input string, fw []byte) (*FooterTable, error) {
	n := int64(len(fw))
	if n < FooterTableEndGap+SizeofFooterEntryHeader {
		return nil, &FormatError{Input: input, Offset: 0, Field: "footer table",
			Reason: fmt.Sprintf("image is 0x%x bytes, too small for a footer table", n), Err: ErrNoFooterTable}
	}
	footerHdr := n - FooterTableEndGap - SizeofFooterEntryHeader
	g := GUID(fw[footerHdr+2 : footerHdr+SizeofFooterEntryHeader])
	if g != FooterGUID {
		return nil, &FormatError{Input: input, Offset: footerHdr + 2, Field: "footer table.GUID",
			Reason: fmt.Sprintf("got %s, want footer GUID %s", g, FooterGUID), Err: ErrNoFooterTable}
	}
	size := int64(binary.LittleEndian.Uint16(fw[footerHdr : footerHdr+2]))
	if size < SizeofFooterEntryHeader {
		return nil, formatErr(input, footerHdr, "footer table.Length", "0x%x smaller than entry header 0x%x", size, SizeofFooterEntryHeader)
	}
	start := footerHdr + SizeofFooterEntryHeader - size
	if start < 0 {
		return nil, formatErr(input, footerHdr, "footer table.Length", "0x%x reaches before the start of the 0x%x-byte image", size, n)
	}
	entries, err := parseFooterEntries(input, fw, start, footerHdr)
	if err != nil {
		return nil, err
	}
	return &FooterTable{Entries: entries}, nil
}

// parseFooterEntries walks the entries in fw[start:end] backwards from end.
func parseFooterEntries(input string, fw []byte, start, end int64) ([]FooterEntry, error) {
	var rev []FooterEntry
	seen := map[GUID]int64{}
	for i := 0; end > start; i++ {
		if end-start < SizeofFooterEntryHeader {
			return nil, formatErr(input, start, "footer table", "0x%x leftover bytes before entry %d, smaller than an entry header", end-start, i)
		}
		hdr := end - SizeofFooterEntryHeader
		l := int64(binary.LittleEndian.Uint16(fw[hdr : hdr+2]))
		g := GUID(fw[hdr+2 : end])
		field := fmt.Sprintf("footer table entry %s.Length", g)
		if l < SizeofFooterEntryHeader {
			return nil, formatErr(input, hdr, field, "0x%x smaller than entry header 0x%x", l, SizeofFooterEntryHeader)
		}
		dataOff := end - l
		if dataOff < start {
			return nil, formatErr(input, hdr, field, "0x%x reaches 0x%x bytes before the table start 0x%x (overlaps the table bounds)", l, start-dataOff, start)
		}
		if prev, dup := seen[g]; dup {
			return nil, formatErr(input, hdr+2, fmt.Sprintf("footer table entry %s.GUID", g), "duplicate GUID (also at offset 0x%x)", prev)
		}
		seen[g] = hdr + 2
		rev = append(rev, FooterEntry{GUID: g, Data: bytes.Clone(fw[dataOff:hdr]), Offset: dataOff})
		end = dataOff
	}
	out := make([]FooterEntry, len(rev))
	for i, e := range rev {
		out[len(rev)-1-i] = e
	}
	return out, nil
}

// Lookup returns the entry with GUID g.
func (t *FooterTable) Lookup(g GUID) (FooterEntry, bool) {
	for _, e := range t.Entries {
		if e.GUID == g {
			return e, true
		}
	}
	return FooterEntry{}, false
}

// MarshalBinary encodes the table, entries in order followed by the footer
// entry. The result must end FooterTableEndGap bytes before the end of an
// image. Offsets in Entries are ignored.
func (t *FooterTable) MarshalBinary() ([]byte, error) {
	var b []byte
	for _, e := range t.Entries {
		var err error
		if b, err = appendFooterEntry(b, e.GUID, e.Data); err != nil {
			return nil, err
		}
	}
	return appendFooterEntry(b, FooterGUID, nil, len(b))
}

// appendFooterEntry appends data, its UINT16 length and g. For the footer
// entry, extra is the size of the entries before it.
func appendFooterEntry(b []byte, g GUID, data []byte, extra ...int) ([]byte, error) {
	l := len(data) + SizeofFooterEntryHeader
	for _, x := range extra {
		l += x
	}
	if l > 0xffff {
		return nil, fmt.Errorf("encoding footer table entry %s: length 0x%x exceeds UINT16", g, l)
	}
	b = append(b, data...)
	b = binary.LittleEndian.AppendUint16(b, uint16(l))
	return append(b, g[:]...), nil
}
