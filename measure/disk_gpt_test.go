package measure

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/mkcvm/mkcvm/ovmf"
)

var espType = ovmf.MustParseGUID("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")

// fakeGPTDisk lays out LBA 1 (header) and LBA 2.. (128-byte entries) with
// one used entry at index used.
func fakeGPTDisk(entries, used int) []byte {
	d := make([]byte, (2+32)*gptSectorSize)
	h := d[gptSectorSize:]
	copy(h, "EFI PART")
	le := binary.LittleEndian
	le.PutUint32(h[gptHdrRevision:], gptRevision1)
	le.PutUint32(h[gptHdrHeaderSize:], SizeofGPTHeader)
	le.PutUint64(h[gptHdrPartEntryLBA:], 2)
	le.PutUint32(h[gptHdrNumPartEntries:], uint32(entries))
	le.PutUint32(h[gptHdrSizeOfPartEntry:], 128)
	e := d[2*gptSectorSize+used*128:]
	copy(e, espType[:])
	uniq := ovmf.MustParseGUID("0f9a7b5e-6c4d-4e2f-8a1b-2c3d4e5f6a7b")
	copy(e[gptEntryUniqueGUID:], uniq[:])
	le.PutUint64(e[gptEntryStartingLBA:], 2048)
	le.PutUint64(e[gptEntryEndingLBA:], 4095)
	return d
}

func TestParseGPT(t *testing.T) {
	g, err := ParseGPT("disk", fakeGPTDisk(128, 3))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Partitions) != 1 || g.Partitions[0].Number != 4 || g.Partitions[0].TypeGUID != espType || g.Partitions[0].LastLBA != 4095 {
		t.Fatalf("partitions %+v", g.Partitions)
	}
	d := g.EventData()
	if len(d) != SizeofGPTHeader+8+128 || binary.LittleEndian.Uint64(d[SizeofGPTHeader:]) != 1 || !bytes.Equal(d[:8], []byte("EFI PART")) {
		t.Errorf("UEFI_GPT_DATA % x", d[:SizeofGPTHeader+8])
	}
}

func TestParseGPTErrors(t *testing.T) {
	mod := func(off int, v uint32) []byte {
		d := fakeGPTDisk(128, 0)
		binary.LittleEndian.PutUint32(d[gptSectorSize+off:], v)
		return d
	}
	for _, tc := range []struct {
		name, field string
		in          []byte
	}{
		{"short", "Signature", make([]byte, 100)},
		{"no signature", "Signature", make([]byte, 4096)},
		{"revision", "Revision", mod(gptHdrRevision, 2)},
		{"header size", "HeaderSize", mod(gptHdrHeaderSize, 1000)},
		{"entry size", "SizeOfPartitionEntry", mod(gptHdrSizeOfPartEntry, 100)},
		{"too many entries", "NumberOfPartitionEntries", mod(gptHdrNumPartEntries, 1<<20)},
		{"array past end", "PartitionEntryLBA", mod(gptHdrPartEntryLBA, 1000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseGPT("disk.img", tc.in)
			var fe *ovmf.FormatError
			if !errors.As(err, &fe) || !bytes.Contains([]byte(fe.Field), []byte(tc.field)) {
				t.Errorf("err = %v, want a FormatError on %s", err, tc.field)
			}
		})
	}
}

func FuzzParseGPT(f *testing.F) {
	f.Add(fakeGPTDisk(128, 0))
	f.Add(fakeGPTDisk(4, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<17 {
			return
		}
		g, err := ParseGPT("fuzz", b)
		if err != nil {
			return
		}
		// Encode -> parse: the event data carries the header and the used
		// entries, which re-parse to the same partitions.
		d := g.EventData()
		if !bytes.Equal(d[:SizeofGPTHeader], b[gptSectorSize:gptSectorSize+SizeofGPTHeader]) ||
			binary.LittleEndian.Uint64(d[SizeofGPTHeader:]) != uint64(len(g.Partitions)) {
			t.Fatal("event data does not carry the header and count")
		}
		off := SizeofGPTHeader + 8
		for _, p := range g.Partitions {
			if !bytes.Equal(d[off:off+len(p.Raw)], p.Raw) {
				t.Fatalf("partition %d not encoded", p.Number)
			}
			off += len(p.Raw)
		}
	})
}
