package ovmf_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

func parseSEVAll(input string, fw []byte) (*ovmf.SEVMetadata, ovmf.SEVESResetBlock, ovmf.SEVHashTableEntry, error) {
	t, err := ovmf.ParseFooterTable(input, fw)
	if err != nil {
		return nil, ovmf.SEVESResetBlock{}, ovmf.SEVHashTableEntry{}, err
	}
	m, err := ovmf.ParseSEVMetadata(input, fw, t)
	if err != nil {
		return nil, ovmf.SEVESResetBlock{}, ovmf.SEVHashTableEntry{}, err
	}
	rb, err := ovmf.ParseSEVESResetBlock(input, t)
	if err != nil {
		return m, rb, ovmf.SEVHashTableEntry{}, err
	}
	ht, err := ovmf.ParseSEVHashTableEntry(input, t)
	return m, rb, ht, err
}

func TestSEVMetadataReal(t *testing.T) {
	fw, err := os.ReadFile(amdSevSuffix)
	if err != nil {
		t.Fatal(err)
	}
	m, rb, ht, err := parseSEVAll("AmdSev.fd", fw)
	if err != nil {
		t.Fatal(err)
	}
	// The real image has the sections ovmftest.DefaultSections copies.
	if d := cmp.Diff(ovmftest.DefaultSections(), m.Sections, cmpopts.IgnoreFields(ovmf.SEVMetadataSection{}, "Offset")); d != "" {
		t.Errorf("sections (-want +got):\n%s", d)
	}
	if m.Offset != 0x1000-0x554 || !m.Has(ovmf.SNPKernelHashes) {
		t.Errorf("metadata at 0x%x, kernel hashes %v", m.Offset, m.Has(ovmf.SNPKernelHashes))
	}
	if rb.APResetEIP != 0x80b004 {
		t.Errorf("AP reset EIP 0x%x", rb.APResetEIP)
	}
	if ht != (ovmf.SEVHashTableEntry{GPA: 0x810c00, Size: 0x400}) || !ht.Supported() {
		t.Errorf("hash table %+v", ht)
	}
}

func TestSEVMetadataSynthetic(t *testing.T) {
	ht := ovmf.SEVHashTableEntry{GPA: 0x810800, Size: 0x800}
	fw, err := ovmftest.Firmware(ovmftest.Options{Size: 0x3000, APResetEIP: 0x1234, HashTable: &ht})
	if err != nil {
		t.Fatal(err)
	}
	m, rb, gotHT, err := parseSEVAll("syn.fd", fw)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ovmftest.DefaultSections(), m.Sections, cmpopts.IgnoreFields(ovmf.SEVMetadataSection{}, "Offset")); d != "" {
		t.Errorf("sections (-want +got):\n%s", d)
	}
	if rb.APResetEIP != 0x1234 || gotHT != ht {
		t.Errorf("reset %+v, hash table %+v", rb, gotHT)
	}
	for _, s := range m.Sections {
		if s.Offset < m.Offset+ovmf.SizeofSEVMetadataHeader || s.Offset >= int64(len(fw)) {
			t.Errorf("section offset 0x%x", s.Offset)
		}
	}
}

func TestSEVMetadataErrors(t *testing.T) {
	sec := ovmftest.DefaultSections
	with := func(i int, f func(*ovmf.SEVMetadataSection)) []ovmf.SEVMetadataSection {
		s := sec()
		f(&s[i])
		return s
	}
	mdOff := 0x3000 - 0x800 // where ovmftest puts the metadata in a 12 KiB image
	for _, tc := range []struct {
		name   string
		opts   ovmftest.Options
		poke   func([]byte)
		want   string
		target error
	}{
		{name: "no metadata", opts: ovmftest.Options{NoSEVMetadata: true}, want: "no SEV metadata entry", target: ovmf.ErrNoSEVMetadata},
		{name: "no footer", opts: ovmftest.Options{NoFooter: true}, target: ovmf.ErrNoFooterTable},
		{name: "signature", poke: func(b []byte) { b[mdOff] = 'X' }, want: "offset 0x2800: SEV metadata.Signature"},
		{name: "version", poke: func(b []byte) { b[mdOff+8] = 2 }, want: "offset 0x2808: SEV metadata.Version: got 2, want 1"},
		{name: "length beyond image", poke: func(b []byte) { binary.LittleEndian.PutUint32(b[mdOff+4:], 0x900) }, want: "offset 0x2804: SEV metadata.Length: 0x900 does not fit"},
		{name: "too many items", poke: func(b []byte) { binary.LittleEndian.PutUint32(b[mdOff+12:], 9) }, want: "offset 0x280c: SEV metadata.NumItems: 9 sections need 0x7c bytes, Length is 0x64"},
		{name: "pointer out of range", poke: func(b []byte) { pokeEntry(b, ovmf.SEVMetadataGUID, 0x4000) }, want: "SEV metadata entry.Offset: 0x4000 from the end is outside"},
		{name: "misaligned base", opts: ovmftest.Options{Sections: with(2, func(s *ovmf.SEVMetadataSection) { s.GPA += 0x10 })}, want: "offset 0x2828: SEV metadata section[2].Base: 0x80d010 not page-aligned"},
		{name: "misaligned size", opts: ovmftest.Options{Sections: with(1, func(s *ovmf.SEVMetadataSection) { s.Size = 0x1001 })}, want: "offset 0x2820: SEV metadata section[1].Size: 0x1001 not a non-zero multiple"},
		{name: "empty", opts: ovmftest.Options{Sections: with(1, func(s *ovmf.SEVMetadataSection) { s.Size = 0 })}, want: "section[1].Size: 0x0 not a non-zero"},
		{name: "beyond 4 GiB", opts: ovmftest.Options{Sections: with(0, func(s *ovmf.SEVMetadataSection) { s.GPA = 0xfffff000; s.Size = 0x2000 })}, want: "section[0].Size: section 0xfffff000+0x2000 ends beyond 4 GiB"},
		{name: "unknown type", opts: ovmftest.Options{Sections: with(3, func(s *ovmf.SEVMetadataSection) { s.Type = 7 })}, want: "offset 0x283c: SEV metadata section[3].Type: unknown section type 0x7"},
		{name: "overlap", opts: ovmftest.Options{Sections: with(6, func(s *ovmf.SEVMetadataSection) { s.GPA = 0x80c000 })}, want: "SEV metadata section[6].Base: section 0x80c000+0xf000 overlaps section[1] 0x80a000+0x3000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Size == 0 {
				tc.opts.Size = 0x3000
			}
			fw, err := ovmftest.Firmware(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if tc.poke != nil {
				tc.poke(fw)
			}
			_, _, _, err = parseSEVAll("bad.fd", fw)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "bad.fd: offset 0x") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %q is not %v", err, tc.target)
			}
		})
	}
}

// pokeEntry overwrites the first 4 data bytes of footer entry g.
func pokeEntry(fw []byte, g ovmf.GUID, v uint32) {
	t, err := ovmf.ParseFooterTable("", fw)
	if err != nil {
		panic(err)
	}
	e, _ := t.Lookup(g)
	binary.LittleEndian.PutUint32(fw[e.Offset:], v)
}

func TestResetBlockAndHashTableErrors(t *testing.T) {
	short := ovmf.FooterEntry{GUID: ovmf.SEVESResetBlockGUID, Data: []byte{1, 2}}
	badHT := ovmf.FooterEntry{GUID: ovmf.SEVHashTableGUID, Data: []byte{0, 0xf0, 0xff, 0xff, 0, 0x20, 0, 0}}
	for _, tc := range []struct {
		name    string
		entries []ovmf.FooterEntry
		parse   func(*ovmf.FooterTable) error
		want    string
		target  error
	}{
		{"reset missing", nil, resetErr, "no SEV-ES reset block entry", ovmf.ErrNotFound},
		{"reset short", []ovmf.FooterEntry{short}, resetErr, "SEV-ES reset block: data is 2 bytes, want 4", nil},
		{"hash table missing", nil, htErr, "no SEV hash table entry", ovmf.ErrNotFound},
		{"hash table short", []ovmf.FooterEntry{{GUID: ovmf.SEVHashTableGUID, Data: []byte{1}}}, htErr, "SEV hash table entry: data is 1 bytes, want 8", nil},
		{"hash table beyond 4 GiB", []ovmf.FooterEntry{badHT}, htErr, "SEV hash table entry.Size: area 0xfffff000+0x2000 ends beyond 4 GiB", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, _ := footerImage(t, 512, tc.entries...)
			tab, err := ovmf.ParseFooterTable("x.fd", img)
			if err != nil {
				t.Fatal(err)
			}
			err = tc.parse(tab)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "x.fd: offset 0x") {
				t.Errorf("error %v, want %q", err, tc.want)
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %q is not %v", err, tc.target)
			}
		})
	}
}

func resetErr(t *ovmf.FooterTable) error { _, err := ovmf.ParseSEVESResetBlock("x.fd", t); return err }
func htErr(t *ovmf.FooterTable) error    { _, err := ovmf.ParseSEVHashTableEntry("x.fd", t); return err }

func FuzzParseSEVMetadata(f *testing.F) {
	if fw, err := os.ReadFile(amdSevSuffix); err == nil {
		f.Add(fw)
	}
	if fw, err := ovmftest.Firmware(ovmftest.Options{Size: 0x1000}); err == nil {
		f.Add(fw)
	}
	f.Fuzz(func(t *testing.T, fw []byte) {
		if len(fw) > 1<<16 {
			return
		}
		m, rb, ht, err := parseSEVAll("fuzz", fw)
		if err != nil {
			if _, ok := errors.AsType[*ovmf.FormatError](err); !ok {
				t.Fatalf("error %T is not a *FormatError: %v", err, err)
			}
			return
		}
		// Encode -> parse gives the same values.
		enc, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, fw[m.Offset:m.Offset+int64(len(enc))]) {
			t.Fatal("re-encoded metadata differs from the input")
		}
		if len(m.Sections) > 100 {
			return // does not fit the synthetic layout
		}
		secs := append([]ovmf.SEVMetadataSection{}, m.Sections...)
		fw2, err := ovmftest.Firmware(ovmftest.Options{Size: 0x1000, Sections: secs, APResetEIP: rb.APResetEIP, HashTable: &ht})
		if err != nil {
			t.Fatal(err)
		}
		m2, rb2, ht2, err := parseSEVAll("fuzz2", fw2)
		if rb.APResetEIP == 0 { // Firmware substitutes its default for 0
			rb2 = rb
		}
		if err != nil {
			t.Fatal(err)
		}
		opt := cmpopts.IgnoreFields(ovmf.SEVMetadataSection{}, "Offset")
		if d := cmp.Diff(m.Sections, m2.Sections, opt, cmpopts.EquateEmpty()); d != "" || rb != rb2 || ht != ht2 {
			t.Fatalf("round trip differs: %s %+v %+v %+v %+v", d, rb, rb2, ht, ht2)
		}
	})
}
