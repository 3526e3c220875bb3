package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

func runTDXCmd(args ...string) (string, error) {
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(append([]string{"measure", "tdx"}, args...))
	err := root.Execute()
	return out.String(), err
}

// MRTDs from td-shim's td_shim_tee_info_hash.py and its two-pass variant on
// the synthetic image synth-a (testdata/provenance/tdx.md).
func TestMeasureTDXCommand(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	fw := filepath.Join(dir, "synth-a.fd")
	if err := os.WriteFile(fw, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTDXCmd("--ovmf", fw)
	if err != nil {
		t.Fatal(err)
	}
	if want := "mrtd  3397909b845d1aca41740e648ba73b64b7a314b97a4faef0062e2c318893cc631c32beb61c3b7acf1df50d47de81f5af\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	out, err = runTDXCmd("--ovmf", fw, "--page-order", "two-pass", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		MRTD      string `json:"mrtd"`
		PageOrder string `json:"page_order"`
		RTMR1     string `json:"rtmr1"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if j.MRTD != "d7fe8ea122bf14304462e4571a042ab2663b9010895bb478aadf609e15a865ed250fb3dad4ce343f4f0a71f733660e51" || j.PageOrder != "two-pass" || j.RTMR1 != "" {
		t.Errorf("json %+v", j)
	}
	// CODE-only input: a clear error, no digest.
	code := filepath.Join(dir, "code.fd")
	if err := os.WriteFile(code, img[0x4000:], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runTDXCmd("--ovmf", code)
	if err == nil || out != "" || !strings.Contains(err.Error(), "CODE-only") {
		t.Errorf("CODE-only: stdout %q, err %v", out, err)
	}
	if _, err := runTDXCmd("--ovmf", fw, "--append", "quiet"); err == nil {
		t.Error("--append without --kernel accepted")
	}
}

// TestMeasureTDXCommandKernel predicts a boot of Debian's kernel as a
// CC-measuring firmware and stub would measure it; RTMR1/RTMR2 are the
// osslsigncode + hashlib known answers of measure/tdx_test.go
// (testdata/provenance/tdx.md).
func TestMeasureTDXCommandKernel(t *testing.T) {
	dir := os.Getenv("MKCVM_DEBDIR")
	deb := filepath.Join(dir, "linux-image-6.1.0-50-amd64_6.1.176-1_amd64.deb")
	if _, err := os.Stat(deb); dir == "" || err != nil {
		if dir != "" {
			t.Fatalf("%s missing (run make debs)", deb)
		}
		t.Skip("MKCVM_DEBDIR unset")
	}
	tmp := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	initrd := make([]byte, 3000000)
	for i := range initrd {
		initrd[i] = byte(i % 251)
	}
	ipath := filepath.Join(tmp, "initrd")
	if err := os.WriteFile(ipath, initrd, 0o644); err != nil {
		t.Fatal(err)
	}
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	fw := filepath.Join(tmp, "synth-a.fd")
	if err := os.WriteFile(fw, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTDXCmd("--ovmf", fw, "--kernel", filepath.Join(tmp, "boot/vmlinuz-6.1.0-50-amd64"), "--initrd", ipath,
		"--append", "console=ttyS0", "--memory", "2048", "--firmware-measures", "yes", "--stub-measures", "yes")
	if err != nil {
		t.Fatal(err)
	}
	want := "mrtd  3397909b845d1aca41740e648ba73b64b7a314b97a4faef0062e2c318893cc631c32beb61c3b7acf1df50d47de81f5af\n" +
		"rtmr0 - not-pinned\n" +
		"rtmr1 367252fce9808987e78f36e2271d3c846c85bb06635ad2ecf2a61921cd74c31659dc11a81bc007a9fc89f8f33c980de0 predicted\n" +
		"rtmr2 17edbb5cf76b967adb6917bbd2898f87e71213e352200f951c699cb6f735cc474077f735ecc070271cd44a0ded4652b5 predicted\n" +
		"rtmr3 " + strings.Repeat("00", 48) + " predicted\n"
	if out != want {
		t.Errorf("stdout\n%s\nwant\n%s", out, want)
	}
}
