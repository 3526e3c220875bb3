package builder

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf"
)

const debianVarsMS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"

func readOVMF(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return b
}

type liveVar struct {
	Name, Vendor string
	Attributes   uint32
	Data         []byte
}

func liveFromMeasure(vs []measure.UEFIVariable) []liveVar {
	var out []liveVar
	for _, v := range vs {
		out = append(out, liveVar{v.Name, v.Vendor.String(), v.Attributes, v.Data})
	}
	return out
}

func liveFromStore(s *VarStore) []liveVar {
	var out []liveVar
	for _, v := range s.Vars {
		if v.State == VarStateAdded || v.State == VarStateAdded&0xfe {
			out = append(out, liveVar{v.Name, v.Vendor.String(), v.Attributes, v.Data})
		}
	}
	return out
}

// TestParseVarStoreDebianMS decodes Debian's Microsoft-enrolled VARS (made
// by booting EnrollDefaultKeys, not by mkcvm) and compares the live
// variables with measure.ParseVarStore, the decoder the PCR 7 predictor uses.
func TestParseVarStoreDebianMS(t *testing.T) {
	fd := readOVMF(t, debianVarsMS)
	s, err := ParseVarStore("OVMF_VARS_4M.ms.fd", fd)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Active("PK", EFIGlobalVariableGUID); !ok {
		t.Error("no live PK")
	}
	m, err := measure.ParseVarStore("OVMF_VARS_4M.ms.fd", fd)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(liveFromMeasure(m), liveFromStore(s)); d != "" {
		t.Errorf("live variables differ from measure.ParseVarStore (-measure +builder):\n%s", d)
	}
}

func TestEnrollSecureBoot(t *testing.T) {
	fd := readOVMF(t, "/usr/share/OVMF/OVMF_VARS_4M.fd")
	sb := SecureBootVars{PK: []byte("pk-esl"), KEK: []byte("kek-esl"), DB: []byte("db-esl")}
	out, err := EnrollSecureBoot("OVMF_VARS_4M.fd", fd, sb, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(fd) || !bytes.Equal(out[0x40000:], fd[0x40000:]) {
		t.Error("enrolment changed the image size or the FTW area")
	}
	m, err := measure.ParseVarStore("enrolled", out)
	if err != nil {
		t.Fatal(err)
	}
	want := []liveVar{
		{"db", EFIImageSecurityDatabaseGUID.String(), 0x27, sb.DB},
		{"KEK", EFIGlobalVariableGUID.String(), 0x27, sb.KEK},
		{"PK", EFIGlobalVariableGUID.String(), 0x27, sb.PK},
	}
	if d := cmp.Diff(want, liveFromMeasure(m)); d != "" {
		t.Errorf("enrolled store (-want +got):\n%s", d)
	}
	s, _ := ParseVarStore("enrolled", out)
	if v, _ := s.Active("PK", EFIGlobalVariableGUID); v.TimeStamp != EFITime(time.Unix(1700000000, 0)) || v.TimeStamp[0] != 0xe7 {
		t.Errorf("PK timestamp % x", v.TimeStamp)
	}
	if _, err := EnrollSecureBoot("enrolled", out, sb, 1700000000); !errors.Is(err, ErrVarExists) {
		t.Errorf("second enrolment: %v, want ErrVarExists", err)
	}
}

func TestParseVarStoreErrors(t *testing.T) {
	fd := readOVMF(t, "/usr/share/OVMF/OVMF_VARS_4M.fd")
	mod := func(off int, b ...byte) []byte {
		c := bytes.Clone(fd)
		copy(c[off:], b)
		return c
	}
	bad := AuthVariable{Name: "X", State: VarStateAdded, Data: []byte{1}}
	enc, _ := bad.MarshalBinary()
	huge := mod(0x64, enc...)
	huge[0x64+40] = 0xff // DataSize runs past the store
	huge[0x64+41] = 0xff
	huge[0x64+42] = 0xff
	for _, tc := range []struct {
		name, field string
		in          []byte
	}{
		{"short", "EFI_FIRMWARE_VOLUME_HEADER.Signature", fd[:20]},
		{"not an NV FV", "FileSystemGuid", mod(16, 1)},
		{"store GUID", "VARIABLE_STORE_HEADER.Signature", mod(0x48, 0)},
		{"store size", "VARIABLE_STORE_HEADER.Size", mod(0x48+16, 0xff, 0xff, 0xff, 0x7f)},
		{"format", "Format/State", mod(0x48+20, 0)},
		{"data size", "NameSize/DataSize", huge},
		{"garbage in free space", "free space", mod(0x1000, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVarStore("vars.fd", tc.in)
			var fe *ovmf.FormatError
			if !errors.As(err, &fe) || !bytes.Contains([]byte(fe.Field), []byte(tc.field)) {
				t.Errorf("err = %v, want a FormatError on %s", err, tc.field)
			}
		})
	}
}

func FuzzParseVarStore(f *testing.F) {
	if fd, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd"); err == nil {
		v := AuthVariable{Name: "PK", Vendor: EFIGlobalVariableGUID, State: VarStateAdded, Attributes: 0x27, Data: []byte("esl")}
		enc, _ := v.MarshalBinary()
		seed := bytes.Clone(fd[:0x2000])
		copy(seed[0x64:], enc)
		// Shrink the store so the seed stays small.
		seed[0x48+16], seed[0x48+17], seed[0x48+18], seed[0x48+19] = 0x00, 0x1f, 0, 0
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		s, err := ParseVarStore("fuzz", b)
		if err != nil {
			return
		}
		// Encode -> parse: each variable's header fields (all but NameSize,
		// as names are decoded up to their NUL) and data re-encode to the
		// bytes they came from.
		for _, v := range s.Vars {
			enc, _ := v.MarshalBinary()
			h := b[v.Offset : v.Offset+60]
			if !bytes.Equal(enc[:36], h[:36]) || !bytes.Equal(enc[40:60], h[40:60]) || !bytes.HasSuffix(enc, v.Data) {
				t.Fatalf("variable at 0x%x does not round-trip", v.Offset)
			}
		}
	})
}
