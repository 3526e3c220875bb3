package measure

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// varStore builds a minimal authenticated variable store volume holding
// vars (test encoder mirroring ParseVarStore; VariableFormat.h layout).
func varStore(vars ...UEFIVariable) []byte {
	const hdrLen = 0x48
	b := make([]byte, hdrLen)
	copy(b[fvSignatureOffset:], "_FVH")
	binary.LittleEndian.PutUint16(b[fvHeaderLengthOffset:], hdrLen)
	st := append([]byte(nil), authenticatedVariableGUID[:]...)
	st = binary.LittleEndian.AppendUint32(st, 0) // size, patched below
	st = append(st, varStoreFormatted, 0xfe, 0, 0, 0, 0, 0, 0)
	for _, v := range vars {
		name := append(ucs2(v.Name), 0, 0)
		h := make([]byte, sizeofAuthVarHeader)
		binary.LittleEndian.PutUint16(h, varStartID)
		h[2] = varAdded
		binary.LittleEndian.PutUint32(h[4:], v.Attributes)
		binary.LittleEndian.PutUint32(h[36:], uint32(len(name)))
		binary.LittleEndian.PutUint32(h[40:], uint32(len(v.Data)))
		copy(h[44:], v.Vendor[:])
		st = append(st, h...)
		st = append(st, name...)
		st = append(st, v.Data...)
		for len(st)%4 != 0 {
			st = append(st, 0xff)
		}
	}
	st = append(st, bytes.Repeat([]byte{0xff}, 64)...)
	binary.LittleEndian.PutUint32(st[16:], uint32(len(st)))
	return append(b, st...)
}

func TestParseVarStore(t *testing.T) {
	want := []UEFIVariable{
		{Vendor: EFIGlobalVariable, Name: "PK", Attributes: 0x27, Data: []byte("pk-esl")},
		{Vendor: EFIImageSecurityDatabase, Name: "db", Attributes: 0x27, Data: []byte("db")},
	}
	got, err := ParseVarStore("vars", varStore(want...))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "PK" || !bytes.Equal(got[0].Data, want[0].Data) || got[1].Vendor != EFIImageSecurityDatabase {
		t.Errorf("got %+v", got)
	}
	// A PK makes SecureBoot 1 in the prediction's PCR7 events.
	p := &Prediction{Algs: []HashAlg{AlgSHA256}}
	if err := predictPCR7(&DirectBoot{Vars: varStore(want...)}, p); err != nil {
		t.Fatal(err)
	}
	if d := DescribeEvent(&p.Events[0].Event); d != "UEFI variable SecureBoot = 1" {
		t.Errorf("first PCR7 event: %s", d)
	}
}

func TestParseVarStoreLayout(t *testing.T) {
	pk := UEFIVariable{Vendor: EFIGlobalVariable, Name: "PK", Attributes: 0x27, Data: []byte("pk-esl")}
	db := UEFIVariable{Vendor: EFIImageSecurityDatabase, Name: "db", Attributes: 0x27, Data: []byte("db")}
	b := varStore(pk, db)
	b[0x48+28+2] = varAdded & 0xfd // VAR_DELETED: PK is: a record, not a live variable
	l, err := ParseVarStoreLayout("vars", b)
	if err != nil {
		t.Fatal(err)
	}
	// Header at 0x48; PK's record at 0x64 is 60+6+6 = 72 bytes, so db's is
	// at 0xac and 60+6+2 = 68 bytes, ending at 0xf0; 64 bytes of free space.
	if !l.Authenticated || l.HeaderOffset != 0x48 || l.Size != len(b)-0x48 || l.End != 0xf0 || l.End+64 != len(b) {
		t.Errorf("layout %+v", l)
	}
	if len(l.Records) != 2 || l.Records[0].Offset != 0x64 || l.Records[0].Live() || l.Records[1].Offset != 0xac || !l.Records[1].Live() || l.Records[1].Name != "db" {
		t.Errorf("records %+v", l.Records)
	}
	if vs, _ := ParseVarStore("vars", b); len(vs) != 1 || vs[0].Name != "db" {
		t.Errorf("live variables %+v, want db only", vs)
	}
}

func TestParseVarStoreErrors(t *testing.T) {
	good := varStore(UEFIVariable{Vendor: EFIGlobalVariable, Name: "PK", Data: []byte("x")})
	mod := func(off int, v ...byte) []byte { b := bytes.Clone(good); copy(b[off:], v); return b }
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"not a volume", good[:10], "not a firmware volume"},
		{"store guid", mod(0x48, 0), "VARIABLE_STORE_HEADER.Signature"},
		{"store size", mod(0x48+16, 0xff, 0xff, 0xff, 0x7f), "VARIABLE_STORE_HEADER.Size"},
		{"format", mod(0x48+20, 0), "VARIABLE_STORE_HEADER.Format"},
		{"name size", mod(0x48+28+36, 0xff, 0xff, 0, 0), "NameSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVarStore("vars.fd", tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "vars.fd: offset 0x") {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseVarStore(f *testing.F) {
	f.Add(varStore(UEFIVariable{Vendor: EFIGlobalVariable, Name: "PK", Data: []byte("x")}))
	f.Add(varStore())
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		vs, err := ParseVarStore("fuzz", b)
		if err != nil {
			return
		}
		// The layout holds every record, in bounds and in order, whose
		// header fields read back from the image; its live records are
		// exactly ParseVarStore's variables.
		l, err := ParseVarStoreLayout("fuzz", b)
		if err != nil {
			t.Fatalf("ParseVarStore accepts what ParseVarStoreLayout rejects: %v", err)
		}
		storeEnd := l.HeaderOffset + l.Size
		if l.End > storeEnd || l.End < l.HeaderOffset+sizeofVariableStoreHeader {
			t.Fatalf("End 0x%x outside the store [0x%x, 0x%x]", l.End, l.HeaderOffset, storeEnd)
		}
		prev, live := l.HeaderOffset+sizeofVariableStoreHeader, 0
		for _, r := range l.Records {
			if r.Offset < prev || r.Offset >= l.End || b[r.Offset+2] != r.State || binary.LittleEndian.Uint16(b[r.Offset:]) != varStartID {
				t.Fatalf("record at 0x%x (previous 0x%x, end 0x%x) misplaced or misread", r.Offset, prev, l.End)
			}
			if l.Authenticated && (binary.LittleEndian.Uint64(b[r.Offset+8:]) != r.MonotonicCount || !bytes.Equal(b[r.Offset+16:r.Offset+32], r.TimeStamp[:])) {
				t.Fatalf("record at 0x%x: authenticated header fields misread", r.Offset)
			}
			prev = r.Offset + 1
			if r.Live() {
				if live >= len(vs) || vs[live].Name != r.Name || !bytes.Equal(vs[live].Data, r.Data) {
					t.Fatalf("live record at 0x%x is not ParseVarStore's variable %d", r.Offset, live)
				}
				live++
			}
		}
		if live != len(vs) {
			t.Fatalf("%d live records, ParseVarStore returned %d", live, len(vs))
		}
		again, err := ParseVarStore("fuzz", varStore(vs...))
		if err != nil || len(again) != len(vs) {
			t.Fatalf("re-encoded store: %d vars, %v; want %d", len(again), err, len(vs))
		}
	})
}
