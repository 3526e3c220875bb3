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
		again, err := ParseVarStore("fuzz", varStore(vs...))
		if err != nil || len(again) != len(vs) {
			t.Fatalf("re-encoded store: %d vars, %v; want %d", len(again), err, len(vs))
		}
	})
}
