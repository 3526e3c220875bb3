package ovmf_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mkcvm/mkcvm/ovmf"
)

// sevEntryTable builds a footer table holding one entry with data d.
func sevEntryTable(t *testing.T, g ovmf.GUID, d []byte) *ovmf.FooterTable {
	img, _ := footerImage(t, 512+len(d), ovmf.FooterEntry{GUID: g, Data: d})
	tab, err := ovmf.ParseFooterTable("fuzz", img)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func checkSEVFormatError(t *testing.T, err error) {
	if _, ok := errors.AsType[*ovmf.FormatError](err); !ok {
		t.Fatalf("error %T is not a *FormatError: %v", err, err)
	}
}

func FuzzParseSEVESResetBlock(f *testing.F) {
	f.Add([]byte{4, 0xb0, 0x80, 0})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, d []byte) {
		if len(d) > 1024 {
			return
		}
		rb, err := ovmf.ParseSEVESResetBlock("fuzz", sevEntryTable(t, ovmf.SEVESResetBlockGUID, d))
		if err != nil {
			checkSEVFormatError(t, err)
			return
		}
		enc, _ := rb.MarshalBinary()
		if !bytes.Equal(enc, d) {
			t.Fatalf("re-encoded % x, input % x", enc, d)
		}
	})
}

func FuzzParseSEVHashTableEntry(f *testing.F) {
	f.Add([]byte{0, 0x0c, 0x81, 0, 0, 4, 0, 0})
	f.Add([]byte{0, 0xf0, 0xff, 0xff, 0, 0x20, 0, 0})
	f.Fuzz(func(t *testing.T, d []byte) {
		if len(d) > 1024 {
			return
		}
		ht, err := ovmf.ParseSEVHashTableEntry("fuzz", sevEntryTable(t, ovmf.SEVHashTableGUID, d))
		if err != nil {
			checkSEVFormatError(t, err)
			return
		}
		enc, _ := ht.MarshalBinary()
		if !bytes.Equal(enc, d) {
			t.Fatalf("re-encoded % x, input % x", enc, d)
		}
	})
}
