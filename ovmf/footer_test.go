package ovmf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// amdSevSuffix is the last 4 KiB of an edk2-stable202405 AmdSevX64 OVMF.fd
// (from virtee/sev-snp-measure tests/fixtures, Apache-2.0; see
// measure/testdata/snp/README.md).
const amdSevSuffix = "../measure/testdata/snp/ovmf_AmdSev_suffix.bin"

var (
	guidA = ovmf.MustParseGUID("11111111-2222-3333-4444-555555555555")
	guidB = ovmf.MustParseGUID("66666666-7777-8888-9999-aaaaaaaaaaaa")
)

func TestGUIDRealFooter(t *testing.T) {
	fw, err := os.ReadFile(amdSevSuffix)
	if err != nil {
		t.Fatal(err)
	}
	// The footer GUID's on-disk bytes as they appear in the real image,
	// 0x30 bytes before its end.
	got := ovmf.GUID(fw[len(fw)-0x30 : len(fw)-0x20])
	if got != ovmf.FooterGUID {
		t.Fatalf("real footer bytes % x parse as %s, want %s", got[:], got, ovmf.FooterGUID)
	}
	want := []byte{0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45, 0xba, 0xea, 0xa3, 0x66, 0xc5, 0x5a, 0x08, 0x2d}
	if !bytes.Equal(ovmf.FooterGUID[:], want) {
		t.Errorf("FooterGUID bytes % x, want % x", ovmf.FooterGUID[:], want)
	}
	if s := ovmf.FooterGUID.String(); s != "96b582de-1fb2-45f7-baea-a366c55a082d" {
		t.Errorf("String() = %s", s)
	}
}

func TestParseGUIDErrors(t *testing.T) {
	for _, s := range []string{"", "96b582de1fb245f7baeaa366c55a082d", "96b582de-1fb2-45f7-baea-a366c55a082z", "96b582de-1fb2-45f7-baea_a366c55a082d"} {
		if _, err := ovmf.ParseGUID(s); err == nil {
			t.Errorf("ParseGUID(%q) succeeded", s)
		}
	}
}

func TestParseFooterTableReal(t *testing.T) {
	fw, err := os.ReadFile(amdSevSuffix)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := ovmf.ParseFooterTable("suffix.bin", fw)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range tab.Entries {
		got = append(got, e.GUID.String())
	}
	// Order and GUIDs from edk2-stable202405 ResetVectorVtf0.asm.
	want := []string{
		"e47a6535-984a-4798-865e-4685a7bf8ec2", // TDX metadata offset
		"dc886566-984a-4798-a75e-5585a7bf67cc", // SEV metadata offset
		"7255371f-3a3b-4b04-927b-1da6efa8d454", // SEV hash table
		"4c2eb361-7d9b-4cc3-8081-127c90d3d294", // SEV-SNP boot block
		"00f771de-1a7e-4fcb-890e-68c77e2fb44e", // SEV-ES reset block
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	e, ok := tab.Lookup(ovmf.MustParseGUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e"))
	if !ok || e.Offset != 0xfb8 || binary.LittleEndian.Uint32(e.Data) != 0x80b004 {
		t.Errorf("reset block entry = %+v, %v", e, ok)
	}
	// Re-encoding gives the same bytes.
	enc, err := tab.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(enc, fw[len(fw)-0x20-len(enc):len(fw)-0x20]) {
		t.Error("MarshalBinary differs from the real table bytes")
	}
}

func footerImage(t *testing.T, size int, entries ...ovmf.FooterEntry) ([]byte, int) {
	t.Helper()
	img := make([]byte, size)
	start, err := ovmftest.PlaceFooterTable(img, &ovmf.FooterTable{Entries: entries})
	if err != nil {
		t.Fatal(err)
	}
	return img, start
}

func TestParseFooterTable(t *testing.T) {
	img, start := footerImage(t, 256, ovmf.FooterEntry{GUID: guidA, Data: []byte{1, 2, 3}}, ovmf.FooterEntry{GUID: guidB})
	tab, err := ovmf.ParseFooterTable("x", img)
	if err != nil {
		t.Fatal(err)
	}
	want := []ovmf.FooterEntry{{GUID: guidA, Data: []byte{1, 2, 3}, Offset: int64(start)}, {GUID: guidB, Data: []byte{}, Offset: int64(start + 21)}}
	if d := cmp.Diff(want, tab.Entries); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, ok := tab.Lookup(ovmf.FooterGUID); ok {
		t.Error("footer entry itself is listed")
	}
}

func TestParseFooterTableErrors(t *testing.T) {
	dup, _ := footerImage(t, 256, ovmf.FooterEntry{GUID: guidA, Data: []byte{1}}, ovmf.FooterEntry{GUID: guidA})
	footer := 256 - 0x20 - 18
	short, _ := footerImage(t, 256, ovmf.FooterEntry{GUID: guidA, Data: []byte{1}})
	binary.LittleEndian.PutUint16(short[footer-18:], 5) // entry length < header
	long, _ := footerImage(t, 256, ovmf.FooterEntry{GUID: guidA, Data: []byte{1}})
	binary.LittleEndian.PutUint16(long[footer-18:], 40) // entry reaches before table
	leftover, _ := footerImage(t, 256, ovmf.FooterEntry{GUID: guidA, Data: []byte{1}})
	binary.LittleEndian.PutUint16(leftover[footer:], 18+19+3) // 3 stray bytes
	tooBig, _ := footerImage(t, 256)
	binary.LittleEndian.PutUint16(tooBig[footer:], 0xffff)
	tiny, _ := footerImage(t, 256)
	binary.LittleEndian.PutUint16(tiny[footer:], 3)
	for _, tc := range []struct {
		name  string
		fw    []byte
		want  string
		isErr error
	}{
		{"empty", nil, "offset 0x0: footer table: image is 0x0 bytes", ovmf.ErrNoFooterTable},
		{"no footer", make([]byte, 4096), "offset 0xfd0: footer table.GUID: got 00000000", ovmf.ErrNoFooterTable},
		{"duplicate", dup, "11111111-2222-3333-4444-555555555555.GUID: duplicate GUID", nil},
		{"entry shorter than header", short, "offset 0xbc: footer table entry 11111111-2222-3333-4444-555555555555.Length: 0x5 smaller", nil},
		{"entry before table", long, "Length: 0x28 reaches 0x15 bytes before the table start", nil},
		{"leftover", leftover, "offset 0xb8: footer table: 0x3 leftover bytes", nil},
		{"table before image", tooBig, "offset 0xce: footer table.Length: 0xffff reaches before the start", nil},
		{"footer length", tiny, "footer table.Length: 0x3 smaller than entry header", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ovmf.ParseFooterTable("fw.bin", tc.fw)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "fw.bin: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if _, ok := errors.AsType[*ovmf.FormatError](err); !ok {
				t.Errorf("error %T is not a *FormatError", err)
			}
			if tc.isErr != nil && !errors.Is(err, tc.isErr) {
				t.Errorf("error %q is not %v", err, tc.isErr)
			}
		})
	}
}

func FuzzParseFooterTable(f *testing.F) {
	if fw, err := os.ReadFile(amdSevSuffix); err == nil {
		f.Add(fw[len(fw)-512:])
	}
	img := make([]byte, 128)
	if _, err := ovmftest.PlaceFooterTable(img, &ovmf.FooterTable{Entries: []ovmf.FooterEntry{{GUID: guidA, Data: []byte{1, 2}}}}); err == nil {
		f.Add(img)
	}
	f.Fuzz(func(t *testing.T, fw []byte) {
		if len(fw) > 1<<16 {
			return
		}
		tab, err := ovmf.ParseFooterTable("fuzz", fw)
		if err != nil {
			if _, ok := errors.AsType[*ovmf.FormatError](err); !ok {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			return
		}
		enc, err := tab.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, fw[len(fw)-0x20-len(enc):len(fw)-0x20]) {
			t.Fatalf("re-encoded table differs from input")
		}
		tab2, err := ovmf.ParseFooterTable("fuzz", concatBytes(make([]byte, 7), enc, make([]byte, 0x20)))
		if err != nil {
			t.Fatal(err)
		}
		for i := range tab.Entries {
			if tab.Entries[i].GUID != tab2.Entries[i].GUID || !bytes.Equal(tab.Entries[i].Data, tab2.Entries[i].Data) {
				t.Fatalf("entry %d differs after round trip", i)
			}
		}
	})
}

func concatBytes(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func FuzzParseGUID(f *testing.F) {
	f.Add("96b582de-1fb2-45f7-baea-a366c55a082d")
	f.Add("96b582de1fb245f7baeaa366c55a082d")
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ovmf.ParseGUID(s)
		if err != nil {
			return
		}
		if !strings.EqualFold(g.String(), s) {
			t.Fatalf("ParseGUID(%q).String() = %q", s, g.String())
		}
		if g2 := ovmf.MustParseGUID(g.String()); g2 != g {
			t.Fatalf("round trip of %q differs", s)
		}
	})
}
