package ovmf_test

import (
	"testing"

	"github.com/mkcvm/mkcvm/ovmf"
)

func TestHasFFSFile(t *testing.T) {
	vol := make([]byte, 0x100)
	copy(vol[0x40:], ovmf.TdTcg2DxeFileGUID[:])
	vol[0x40+18] = ovmf.FVFileTypeDriver
	copy(vol[0x81:], ovmf.TDXMetadataGUID[:]) // unaligned: not a file header
	vol[0x81+18] = ovmf.FVFileTypeDriver
	for _, tc := range []struct {
		name string
		g    ovmf.GUID
		typ  byte
		want bool
	}{
		{"driver", ovmf.TdTcg2DxeFileGUID, ovmf.FVFileTypeDriver, true},
		{"other type", ovmf.TdTcg2DxeFileGUID, 0x03, false},
		{"unaligned", ovmf.TDXMetadataGUID, ovmf.FVFileTypeDriver, false},
		{"absent", ovmf.FooterGUID, ovmf.FVFileTypeDriver, false},
	} {
		if got := ovmf.HasFFSFile(vol, tc.g, tc.typ); got != tc.want {
			t.Errorf("%s: HasFFSFile = %v, want %v", tc.name, got, tc.want)
		}
	}
	// A GUID cut off by the end of the volume.
	if ovmf.HasFFSFile(vol[:0x40+17], ovmf.TdTcg2DxeFileGUID, ovmf.FVFileTypeDriver) {
		t.Error("truncated header matched")
	}
}
