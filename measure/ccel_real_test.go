package measure_test

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
)

// Real CC event logs captured from Intel TDX guests ship as test data of
// the github.com/google/go-eventlog module (a dependency of go-tpm-tools),
// together with the RTMRs of the TD quotes taken with them
// (ccel/cceventlog_test.go, COS113TDX). They are read from the module cache,
// not copied into this repository; see testdata/provenance/tdx.md.
func goEventlogCCELDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-eventlog").Output()
	dir := filepath.Join(strings.TrimSpace(string(out)), "testdata", "eventlogs", "ccel")
	if _, serr := os.Stat(dir); err != nil || serr != nil {
		if os.Getenv("MKCVM_DEBDIR") != "" {
			t.Fatalf("go-eventlog test data not found (go list -m: %v; %v)", err, serr)
		}
		t.Skipf("go-eventlog test data not found: %v %v", err, serr)
	}
	return dir
}

func TestParseCCELReal(t *testing.T) {
	dir := goEventlogCCELDir(t)
	tests := []struct {
		file string
		// RTMR0..2 from the TD quote (go-eventlog ccel/cceventlog_test.go);
		// empty when the module records none.
		rtmr [3]string
	}{
		{file: "cos-113-intel-tdx.bin", rtmr: [3]string{
			"3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
			"f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
			"4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
		}},
		{file: "ubuntu-2404-intel-tdx.bin"},
		{file: "gdc-tdx.bin"},
		{file: "cos-113-intel-tdx-dupe-separator.bin"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			l, err := measure.ParseCCEL(tc.file, b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := measure.ReplayRTMRs(l)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range tc.rtmr {
				if want != "" && hex.EncodeToString(got[i][:]) != want {
					t.Errorf("RTMR%d replay %x, quote has %s", i, got[i], want)
				}
			}
			x, err := measure.ExplainCCEL(l, nil)
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if err := x.WriteText(&out); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{"Spec ID event", "RTMR1 EV_EFI_ACTION", `"Calling EFI Application from Boot Option"`, "separator"} {
				if !strings.Contains(out.String(), s) {
					t.Errorf("explanation lacks %q:\n%s", s, out.String())
				}
			}
			// Re-encoding in edk2's form gives back the log's bytes (up to
			// the padding of the log area).
			enc, err := measure.MarshalCCEL(l)
			if err != nil {
				t.Fatal(err)
			}
			if len(enc) > len(b) || string(b[:len(enc)]) != string(enc) {
				t.Errorf("re-encoded log differs from the original in its first %d bytes", len(enc))
			}
		})
	}
}

func TestParseCCELTableReal(t *testing.T) {
	dir := goEventlogCCELDir(t)
	for _, f := range []string{"CCEL.bin", "cos-113-intel-tdx.table.bin"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		tab, err := measure.ParseCCELTable(f, b)
		if err != nil {
			t.Fatal(err)
		}
		if tab.LAML == 0 || tab.LASA == 0 {
			t.Errorf("%s: LAML 0x%x LASA 0x%x", f, tab.LAML, tab.LASA)
		}
		enc, _ := tab.MarshalBinary()
		if string(enc) != string(b) {
			t.Errorf("%s: re-encoded table differs", f)
		}
	}
}
