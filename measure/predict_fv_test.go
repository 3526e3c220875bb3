package measure

import (
	"strings"
	"testing"
)

func TestExtractOVMFVolumesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "no LZMA-compressed PEIFV/DXEFV"},
		{"no signature", make([]byte, 4096), "EFI_FIRMWARE_VOLUME_HEADER.Signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ExtractOVMFVolumes("code.fd", tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseOVMFVolumes(f *testing.F) {
	hdr := make([]byte, 0x100)
	copy(hdr[fvSignatureOffset:], "_FVH")
	hdr[fvLengthOffset+1] = 1 // FvLength 0x100
	hdr[fvHeaderLengthOffset] = 0x48
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<14 {
			return
		}
		_, _ = ExtractOVMFVolumes("fuzz", b)
	})
}
