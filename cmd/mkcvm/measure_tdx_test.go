package main

import (
	"bytes"
	"encoding/json"
	"os"
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
