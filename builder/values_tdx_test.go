package builder

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// Known answers from td-shim's td_shim_tee_info_hash.py (single order) and
// its two-pass variant (testdata/provenance/tdx.md).
const (
	tdxSynthASingle  = "3397909b845d1aca41740e648ba73b64b7a314b97a4faef0062e2c318893cc631c32beb61c3b7acf1df50d47de81f5af"
	tdxSynthATwoPass = "d7fe8ea122bf14304462e4571a042ab2663b9010895bb478aadf609e15a865ed250fb3dad4ce343f4f0a71f733660e51"
)

func TestTDXShapeValues(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		order, qemu, wantOrder, mrtd string
	}{
		{"", "", "single", tdxSynthASingle},
		{"", "9.2", "single", tdxSynthASingle},
		{"", "8.2", "two-pass", tdxSynthATwoPass},
		{"single", "8.2", "single", tdxSynthASingle},
		{"two-pass", "", "two-pass", tdxSynthATwoPass},
	} {
		s := Shape{Name: "tdx", Platform: "tdx", VMM: "qemu", VMMVersion: tc.qemu, Machine: "q35", VCPUs: 1, MemoryMiB: 1024, PageOrder: tc.order}
		out, err := ComputeShape(&MeasureInputs{Firmware: img}, s)
		if err != nil {
			t.Fatal(err)
		}
		if out.TDX == nil || out.TDX.MRTD != tc.mrtd || out.PageOrder != tc.wantOrder {
			t.Errorf("page order %q: got %+v (page_order %q)", tc.order, out.TDX, out.PageOrder)
		}
		for i, b := range out.TDX.RTMRBasis {
			if b != "not-pinned" || out.TDX.RTMR[i] != "" {
				t.Errorf("RTMR%d = %q (%s) without a kernel", i, out.TDX.RTMR[i], b)
			}
		}
	}
}

func TestTDXShapeErrors(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   MeasureInputs
		s    Shape
		want string
	}{
		{"code only", MeasureInputs{FirmwareCode: img}, Shape{Platform: "tdx"}, "combined VARS+CODE"},
		{"vmm", MeasureInputs{Firmware: img}, Shape{Platform: "tdx", VMM: "gce"}, "only QEMU"},
		{"page order", MeasureInputs{Firmware: img}, Shape{Platform: "tdx", PageOrder: "random"}, "random"},
		{"profile missing", MeasureInputs{Firmware: img}, Shape{Platform: "tdx", Profile: "ccel"}, `profile input "ccel"`},
		{"bad profile", MeasureInputs{Firmware: img, Kernel: []byte("k"), Inputs: map[string][]byte{"ccel": []byte("junk")}}, Shape{Platform: "tdx", Profile: "ccel", MemoryMiB: 1024}, "TDX profile: ccel: offset 0x"},
		{"no memory", MeasureInputs{Firmware: img, Kernel: []byte("k")}, Shape{Platform: "tdx"}, "memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ComputeShape(&tc.in, tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestExplainTDX(t *testing.T) {
	algs := []measure.HashAlg{measure.AlgSHA384}
	sep := []byte{0, 0, 0, 0}
	l := &measure.EventLog{SpecID: measure.NewSpecID(measure.AlgSHA384), Events: []measure.Event{
		measure.NewEvent(2, measure.EvEFIAction, []byte(measure.ActionCallingEFIApplication), []byte(measure.ActionCallingEFIApplication), algs),
		measure.NewEvent(2, measure.EvSeparator, sep, sep, algs),
	}}
	ccel, err := measure.MarshalCCEL(l)
	if err != nil {
		t.Fatal(err)
	}
	rtmrs, err := measure.ReplayRTMRs(l)
	if err != nil {
		t.Fatal(err)
	}
	want := &manifest.TDXValues{RTMRBasis: [4]string{"not-pinned", "predicted", "not-pinned", "not-pinned"}, RTMR: [4]string{"", hex.EncodeToString(rtmrs[1][:])}}
	for i, e := range l.Events {
		want.EventLog = append(want.EventLog, manifest.Event{Index: i + 1, PCR: int(e.PCR), Type: e.Type.String(), Digests: map[string]string{"sha384": hex.EncodeToString(e.Digests[0].Value)}})
	}
	var out strings.Builder
	n, err := ExplainTDX(&out, "CCEL", ccel, want)
	if err != nil || n != 0 {
		t.Fatalf("ExplainTDX = %d, %v:\n%s", n, err, out.String())
	}
	if !strings.Contains(out.String(), "[match]") || !strings.Contains(out.String(), "matches predicted value") {
		t.Errorf("output:\n%s", out.String())
	}
	want.RTMR[1] = strings.Repeat("00", 48)
	want.EventLog[1].Digests["sha384"] = strings.Repeat("11", 48)
	out.Reset()
	if n, err := ExplainTDX(&out, "CCEL", ccel, want); err != nil || n != 2 {
		t.Errorf("tampered prediction: %d mismatches, %v:\n%s", n, err, out.String())
	}
	if _, err := ExplainTDX(&out, "CCEL", ccel[:40], nil); err == nil || !strings.Contains(err.Error(), "CCEL: offset 0x") {
		t.Errorf("truncated log: %v", err)
	}
}

func TestTDXShapeWorkload(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	w := &Workload{Image: "registry.example/app@sha256:" + strings.Repeat("ab", 32), Config: "sha256:" + strings.Repeat("cd", 32)}
	out, err := ComputeShape(&MeasureInputs{Firmware: img, Workload: w}, Shape{Name: "tdx", Platform: "tdx"})
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := measure.PredictWorkload(measure.WorkloadRef{Image: w.Image, ConfigDigest: w.Config})
	if err != nil {
		t.Fatal(err)
	}
	if out.TDX.RTMRBasis[3] != "predicted" || out.TDX.RTMR[3] != hex.EncodeToString(v.RTMR[:]) {
		t.Errorf("RTMR3 %q (%s), want the runner's %x", out.TDX.RTMR[3], out.TDX.RTMRBasis[3], v.RTMR)
	}
}
