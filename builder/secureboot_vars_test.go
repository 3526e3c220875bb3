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

// TestVarStoreDebianMS decodes Debian's Microsoft-enrolled VARS (made by
// booting EnrollDefaultKeys, not by mkcvm) with measure.ParseVarStoreLayout,
// checks it is writable, and re-encodes every record with AuthVariable's
// encoder: edk2 wrote those bytes, so this cross-checks the encoder and the
// decoded header fields against an independent writer.
func TestVarStoreDebianMS(t *testing.T) {
	fd := readOVMF(t, debianVarsMS)
	s, err := writableVarStore("OVMF_VARS_4M.ms.fd", fd)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		name   string
		vendor ovmf.GUID
	}{{"PK", EFIGlobalVariableGUID}, {"KEK", EFIGlobalVariableGUID}, {"db", EFIImageSecurityDatabaseGUID}, {"dbx", EFIImageSecurityDatabaseGUID}} {
		if _, ok := activeVar(s, want.name, want.vendor); !ok {
			t.Errorf("no live %s", want.name)
		}
	}
	for _, r := range s.Records {
		v := AuthVariable{State: r.State, Attributes: r.Attributes, MonotonicCount: r.MonotonicCount, TimeStamp: r.TimeStamp, PubKeyIndex: r.PubKeyIndex, Name: r.Name, Vendor: r.Vendor, Data: r.Data}
		enc, _ := v.MarshalBinary()
		if got := fd[r.Offset : r.Offset+len(enc)]; !bytes.Equal(got, enc) {
			t.Errorf("record %s at 0x%x: re-encoded bytes differ from the image", r.Name, r.Offset)
		}
	}
	if s.End <= s.HeaderOffset+28 || s.End > s.HeaderOffset+s.Size {
		t.Errorf("End 0x%x outside the store [0x%x, 0x%x)", s.End, s.HeaderOffset, s.HeaderOffset+s.Size)
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
	want := []measure.UEFIVariable{
		{Vendor: EFIImageSecurityDatabaseGUID, Name: "db", Attributes: 0x27, Data: sb.DB},
		{Vendor: EFIGlobalVariableGUID, Name: "KEK", Attributes: 0x27, Data: sb.KEK},
		{Vendor: EFIGlobalVariableGUID, Name: "PK", Attributes: 0x27, Data: sb.PK},
	}
	if d := cmp.Diff(want, m); d != "" {
		t.Errorf("enrolled store (-want +got):\n%s", d)
	}
	s, _ := measure.ParseVarStoreLayout("enrolled", out)
	if v, _ := activeVar(s, "PK", EFIGlobalVariableGUID); v.TimeStamp != EFITime(time.Unix(1700000000, 0)) || v.TimeStamp[0] != 0xe7 {
		t.Errorf("PK timestamp % x", v.TimeStamp)
	}
	if _, err := EnrollSecureBoot("enrolled", out, sb, 1700000000); !errors.Is(err, ErrVarExists) {
		t.Errorf("second enrolment: %v, want ErrVarExists", err)
	}
}

func TestWritableVarStoreErrors(t *testing.T) {
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
		{"format", "VARIABLE_STORE_HEADER.Format", mod(0x48+20, 0)},
		{"state", "VARIABLE_STORE_HEADER.State", mod(0x48+21, 0)},
		{"data size", "NameSize", huge},
		{"garbage in free space", "free space", mod(0x1000, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := writableVarStore("vars.fd", tc.in)
			var fe *ovmf.FormatError
			if !errors.As(err, &fe) || !bytes.Contains([]byte(fe.Field), []byte(tc.field)) {
				t.Errorf("err = %v, want a FormatError on %s", err, tc.field)
			}
		})
	}
}
