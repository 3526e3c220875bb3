package ovmf_test

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// TestParseTDXMetadataDebian checks the real Debian bookworm OVMF.fd. The
// expected sections were read with a stand-alone Python struct dump (see
// testdata/provenance/tdx.md) and agree with what td-shim's
// td_shim_tee_info_hash.py accepts.
func TestParseTDXMetadataDebian(t *testing.T) {
	fw := ovmftest.DebianOVMF(t)
	m, err := ovmf.ParseTDXMetadata("OVMF.fd", fw)
	if err != nil {
		t.Fatal(err)
	}
	want := &ovmf.TDXMetadata{Offset: 0x1ff7c0, Version: 1, Sections: []ovmf.TDXMetadataSection{
		{DataOffset: 0x20000, RawDataSize: 0x1e0000, MemoryAddress: 0xffe20000, MemoryDataSize: 0x1e0000, Type: ovmf.TDXSectionBFV, Attributes: ovmf.TDXAttrExtendMR},
		{DataOffset: 0, RawDataSize: 0x20000, MemoryAddress: 0xffe00000, MemoryDataSize: 0x20000, Type: ovmf.TDXSectionCFV},
		{MemoryAddress: 0x810000, MemoryDataSize: 0x10000, Type: ovmf.TDXSectionTempMem},
		{MemoryAddress: 0x80b000, MemoryDataSize: 0x2000, Type: ovmf.TDXSectionTempMem},
		{MemoryAddress: 0x809000, MemoryDataSize: 0x2000, Type: ovmf.TDXSectionTDHOB},
		{MemoryAddress: 0x800000, MemoryDataSize: 0x6000, Type: ovmf.TDXSectionTempMem},
	}}
	if d := cmp.Diff(want, m); d != "" {
		t.Errorf("metadata (-want +got):\n%s", d)
	}
}

// TestParseTDXMetadataCodeOnly cuts the VARS part off the real image: the
// footer and descriptor are still found, but the BFV's raw data lies past
// the end of the file, which must be a clear error, not a digest.
func TestParseTDXMetadataCodeOnly(t *testing.T) {
	fw := ovmftest.DebianOVMF(t)
	_, err := ovmf.ParseTDXMetadata("OVMF_CODE.fd", fw[0x20000:])
	var fe *ovmf.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want *FormatError", err)
	}
	for _, s := range []string{"OVMF_CODE.fd", "section[0] (BFV).DataOffset", "0x20000 bytes short", "CODE-only"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

func synthTDX(t testing.TB) ([]byte, *ovmf.TDXMetadata) {
	t.Helper()
	img, m, err := ovmftest.TDXFirmware(ovmftest.TDXOptions{VarsSize: 0x4000, CodeSize: 0xc000, Seed: 1, Extra: []ovmf.TDXMetadataSection{
		{MemoryAddress: 0x800000, MemoryDataSize: 0x2000, Type: ovmf.TDXSectionTempMem},
		{MemoryAddress: 0x809000, MemoryDataSize: 0x1000, Type: ovmf.TDXSectionTDHOB},
		{MemoryAddress: 0x1000000, MemoryDataSize: 0x4000, Type: ovmf.TDXSectionPermMem, Attributes: ovmf.TDXAttrPageAug},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return img, m
}

func TestParseTDXMetadataSynthetic(t *testing.T) {
	img, want := synthTDX(t)
	got, err := ovmf.ParseTDXMetadata("synth.fd", img)
	if err != nil {
		t.Fatal(err)
	}
	want.Offset = int64(len(img) - 0x1000 + ovmf.SizeofGUID)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("metadata (-want +got):\n%s", d)
	}
	if s, ok := got.Section(ovmf.TDXSectionTDHOB); !ok || s.MemoryAddress != 0x809000 || s.Pages() != 1 {
		t.Errorf("Section(TD_HOB) = %+v, %v", s, ok)
	}
}

// TestParseTDXMetadataErrors corrupts one field of the synthetic image per
// row and expects the error to name that field (and its offset).
func TestParseTDXMetadataErrors(t *testing.T) {
	img, _ := synthTDX(t)
	guid := len(img) - 0x1000
	desc := guid + ovmf.SizeofGUID
	sec := func(i, field int) int {
		return desc + ovmf.SizeofTDXMetadataDescriptor + i*ovmf.SizeofTDXMetadataSection + field
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }
	}
	put64 := func(off int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
	}
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   []string // substrings of the error
		noTDX  bool     // errors.Is(err, ErrNoTDXMetadata)
	}{
		{name: "no footer", mutate: func(b []byte) []byte { b[len(b)-0x21] ^= 0xff; return b }, want: []string{"no OVMF footer"}, noTDX: true},
		{name: "no TDX entry", mutate: func(b []byte) []byte {
			// Replace the footer table by one with an unrelated entry.
			if _, err := ovmftest.PlaceFooterTable(b, &ovmf.FooterTable{Entries: []ovmf.FooterEntry{{GUID: ovmf.MustParseGUID("11111111-2222-3333-4444-555555555555"), Data: []byte{1, 2, 3, 4}}}}); err != nil {
				t.Fatal(err)
			}
			return b
		}, want: []string{"no TDX metadata offset entry"}, noTDX: true},
		{name: "offset before start", mutate: func(b []byte) []byte {
			e, _ := ovmf.TDXMetadataOffsetEntry(len(b), 0)
			binary.LittleEndian.PutUint32(e.Data, uint32(len(b)+5))
			if _, err := ovmftest.PlaceFooterTable(b, &ovmf.FooterTable{Entries: []ovmf.FooterEntry{e}}); err != nil {
				t.Fatal(err)
			}
			return b
		}, want: []string{"TDX metadata offset", "before its start"}},
		{name: "GUID", mutate: func(b []byte) []byte { b[guid] ^= 1; return b }, want: []string{"TDX metadata GUID"}},
		{name: "signature", mutate: func(b []byte) []byte { b[desc] = 'X'; return b }, want: []string{"Signature", `"XDVF"`}},
		{name: "version", mutate: put32(desc+8, 2), want: []string{"Version", "got 2"}},
		{name: "zero sections", mutate: put32(desc+12, 0), want: []string{"NumberOfSectionEntry"}},
		{name: "huge count", mutate: put32(desc+12, 0xffffffff), want: []string{"NumberOfSectionEntry"}},
		{name: "length mismatch", mutate: put32(desc+4, 0x30), want: []string{"Length", "0x30"}},
		{name: "misaligned address", mutate: put64(sec(2, 8), 0x800010), want: []string{"section[2] (TempMem).MemoryAddress", "not 4 KiB aligned"}},
		{name: "misaligned size", mutate: put64(sec(2, 16), 0x1800), want: []string{"section[2] (TempMem).MemoryDataSize", "multiple of 4 KiB"}},
		{name: "address overflow", mutate: put64(sec(2, 8), 0xfffffffffffff000), want: []string{"overflows"}},
		{name: "overlap", mutate: put64(sec(3, 8), 0x801000), want: []string{"section[3] (TD_HOB).MemoryAddress", "overlaps section[2] (TempMem)"}},
		{name: "raw larger than memory", mutate: put32(sec(0, 4), 0xd000), want: []string{"section[0] (BFV).RawDataSize", "larger than MemoryDataSize"}},
		{name: "raw out of range", mutate: put32(sec(1, 0), 0xe000), want: []string{"section[1] (CFV).DataOffset", "past the", "CODE-only"}},
		{name: "unknown type", mutate: put32(sec(2, 24), 42), want: []string{"section[2] (type(42)).Type", "unknown section type 42"}},
		{name: "unknown attribute", mutate: put32(sec(2, 28), 0x10), want: []string{"section[2] (TempMem).Attributes", "unknown bits 0x10"}},
		{name: "TD_HOB with data", mutate: put32(sec(3, 4), 0x1000), want: []string{"section[3] (TD_HOB).RawDataSize", "want no raw data"}},
		{name: "TempMem extended", mutate: put32(sec(2, 28), ovmf.TDXAttrExtendMR), want: []string{"MR.EXTEND set on a TempMem"}},
		{name: "AUG and EXTEND", mutate: put32(sec(0, 28), ovmf.TDXAttrPageAug|ovmf.TDXAttrExtendMR), want: []string{"section[0] (BFV).Attributes", "both MR.EXTEND and PAGE.AUG"}},
		{name: "PermMem without AUG", mutate: put32(sec(4, 28), 0), want: []string{"PermMem section without PAGE.AUG"}},
		{name: "second BFV", mutate: put32(sec(1, 24), 0), want: []string{"section[1].Type", "second BFV"}},
		{name: "no BFV", mutate: put32(sec(0, 24), uint32(ovmf.TDXSectionPayload)), want: []string{"no BFV section"}},
		{name: "CFV without data", mutate: put32(sec(1, 4), 0), want: []string{"section[1] (CFV).RawDataSize", "0 for a CFV"}},
		{name: "truncated descriptor", mutate: func(b []byte) []byte {
			// Point the metadata 0x18 bytes before the end of the image:
			// the GUID fits, the descriptor does not.
			e, _ := ovmf.TDXMetadataOffsetEntry(len(b), int64(len(b)-0x18))
			if _, err := ovmftest.PlaceFooterTable(b, &ovmf.FooterTable{Entries: []ovmf.FooterEntry{e}}); err != nil {
				t.Fatal(err)
			}
			return b
		}, want: []string{"TDX metadata", "want at least 0x20"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte(nil), img...))
			_, err := ovmf.ParseTDXMetadata("synth.fd", b)
			var fe *ovmf.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want *FormatError", err)
			}
			for _, s := range append([]string{"synth.fd: offset 0x"}, tc.want...) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
			if got := errors.Is(err, ovmf.ErrNoTDXMetadata); got != tc.noTDX {
				t.Errorf("errors.Is(ErrNoTDXMetadata) = %v, want %v", got, tc.noTDX)
			}
		})
	}
}

func TestTDXSectionTypeString(t *testing.T) {
	for typ, want := range map[ovmf.TDXSectionType]string{ovmf.TDXSectionBFV: "BFV", ovmf.TDXSectionTDHOB: "TD_HOB", ovmf.TDXSectionTDParams: "TD_PARAMS", 9: "type(9)"} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint32(typ), got, want)
		}
	}
}

// FuzzParseTDXMetadata feeds arbitrary bytes both as a metadata block and
// as a whole image. It must never panic, and a block that decodes must
// encode back to the same value.
func FuzzParseTDXMetadata(f *testing.F) {
	img, m := synthTDX(f)
	blk, err := m.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blk)
	f.Add(img[len(img)-0x1000:])
	f.Add(blk[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		if _, err := ovmf.ParseTDXMetadata("fuzz", b); err != nil && !strings.HasPrefix(err.Error(), "fuzz: offset 0x") {
			t.Fatalf("error without input and offset: %v", err)
		}
		got, err := ovmf.DecodeTDXMetadata("fuzz", b, 0)
		if err != nil {
			return
		}
		enc, err := got.MarshalBinary()
		if err != nil {
			t.Fatalf("re-encoding decoded metadata: %v", err)
		}
		again, err := ovmf.DecodeTDXMetadata("fuzz", enc, 0)
		if err != nil {
			t.Fatalf("decoding re-encoded metadata: %v", err)
		}
		if d := cmp.Diff(got, again); d != "" {
			t.Fatalf("round trip (-first +second):\n%s", d)
		}
	})
}
