package measure_test

import (
	"crypto/sha512"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// Known answers for the TDX boot prediction (testdata/provenance/tdx.md):
//   - tdxKernelSHA384: osslsigncode 2.9 "Calculated message digest" of the
//     QEMU-patched Debian kernel re-signed with -h sha384 (initrd 3000000
//     bytes, 2048 MiB q35, -append "console=ttyS0");
//   - tdxRTMR1, tdxRTMR2: Python hashlib replay of the event digests laid
//     out per edk2 TdTcg2Dxe / X86QemuLoadImageLib and the Linux EFI stub;
//   - tdxCFV: Python hashlib.sha384 of OVMF.fd[0:0x20000].
const (
	tdxKernelSHA384 = "bb39f094f772835be65c39a4c0ff13ce69fdfd3f91ab45ec1612ccb7b6f78ec56357fb6ecc03de7d75bd53e9b6b46ec3"
	tdxRTMR1        = "367252fce9808987e78f36e2271d3c846c85bb06635ad2ecf2a61921cd74c31659dc11a81bc007a9fc89f8f33c980de0"
	tdxRTMR2        = "17edbb5cf76b967adb6917bbd2898f87e71213e352200f951c699cb6f735cc474077f735ecc070271cd44a0ded4652b5"
	tdxCFV          = "f87302177b059d54a2cf0c5f13340dbabf5c9dd60dc3f996c68b776fbe4de959769443a3d8ef6538b97d7e151c8298e8"
	tdxZero         = "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
)

// tdxInitrd is the deterministic initrd the known answers use: byte i is
// i mod 251, 3000000 bytes.
func tdxInitrd() []byte {
	b := make([]byte, 3000000)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func boolp(b bool) *bool { return &b }

func tdxDebianInputs(t *testing.T) measure.TDXInputs {
	return measure.TDXInputs{
		FirmwareName: "OVMF.fd", Firmware: ovmftest.DebianOVMF(t),
		KernelName: "vmlinuz", Kernel: snpDebFile(t, "vmlinuz-6.1.0-50-amd64"),
		Initrd: tdxInitrd(), Cmdline: "console=ttyS0", MemoryMiB: 2048,
	}
}

// TestTDXDebianFirmwareDoesNotMeasure: Debian bookworm's OVMF (edk2
// 2022.11) has no TdTcg2Dxe, so every RTMR stays zero, fully predicted.
func TestTDXDebianFirmwareDoesNotMeasure(t *testing.T) {
	r, err := measure.TDX(tdxDebianInputs(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.FirmwareMeasures || len(r.Events) != 0 {
		t.Fatalf("FirmwareMeasures = %v with %d events, want false and none", r.FirmwareMeasures, len(r.Events))
	}
	for i := range measure.NumRTMRs {
		if got := hex.EncodeToString(r.RTMR[i][:]); got != tdxZero || r.Basis[i] != measure.RTMRPredicted {
			t.Errorf("RTMR%d = %s (%s), want zero (predicted)", i, got, r.Basis[i])
		}
	}
	if hex.EncodeToString(r.MRTD[:]) != mrtdKAT["debian-OVMF.fd"][measure.PageOrderSingle] {
		t.Errorf("MRTD = %x", r.MRTD)
	}
	if !strings.Contains(strings.Join(r.Notes, "\n"), "no TDX register covers the kernel") {
		t.Errorf("notes lack the coverage caveat: %q", r.Notes)
	}
}

// TestTDXMeasuringFirmwarePrediction predicts the boot as a CC-measuring
// OVMF would measure the same kernel, initrd and command line.
func TestTDXMeasuringFirmwarePrediction(t *testing.T) {
	tests := []struct {
		name        string
		stub        bool
		rtmr2       string
		rtmr2Events int
	}{
		{name: "stub measures", stub: true, rtmr2: tdxRTMR2, rtmr2Events: 2},
		{name: "old stub", stub: false, rtmr2: tdxZero},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := tdxDebianInputs(t)
			in.FirmwareMeasures, in.StubMeasures = boolp(true), boolp(tc.stub)
			r, err := measure.TDX(in)
			if err != nil {
				t.Fatal(err)
			}
			want := [measure.NumRTMRs]string{"", tdxRTMR1, tc.rtmr2, tdxZero}
			wantBasis := [measure.NumRTMRs]measure.RTMRBasis{measure.RTMRNotPinned, measure.RTMRPredicted, measure.RTMRPredicted, measure.RTMRPredicted}
			for i := 1; i < measure.NumRTMRs; i++ {
				if got := hex.EncodeToString(r.RTMR[i][:]); got != want[i] {
					t.Errorf("RTMR%d = %s, want %s", i, got, want[i])
				}
			}
			if r.Basis != wantBasis {
				t.Errorf("Basis = %v, want %v", r.Basis, wantBasis)
			}
			var kernel, cfv string
			n2 := 0
			for _, e := range r.Events {
				switch {
				case e.Type == measure.EvEFIBootServicesApp:
					kernel = hex.EncodeToString(e.Digest[:])
				case e.Type == measure.EvEFIPlatformFirmwareBlob2:
					cfv = hex.EncodeToString(e.Digest[:])
				case e.MRIndex == measure.CCMRIndexRTMR2:
					n2++
				}
			}
			if kernel != tdxKernelSHA384 {
				t.Errorf("kernel event digest %s, want osslsigncode's %s", kernel, tdxKernelSHA384)
			}
			if cfv != tdxCFV {
				t.Errorf("CFV event digest %s, want %s", cfv, tdxCFV)
			}
			if n2 != tc.rtmr2Events {
				t.Errorf("%d RTMR2 events, want %d", n2, tc.rtmr2Events)
			}
		})
	}
}

func TestTDXNoKernel(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	r, err := measure.TDX(measure.TDXInputs{Firmware: img, PageOrder: measure.PageOrderTwoPass})
	if err != nil {
		t.Fatal(err)
	}
	if r.Boot || hex.EncodeToString(r.MRTD[:]) != mrtdKAT["synth-a"][measure.PageOrderTwoPass] || r.PageOrder != measure.PageOrderTwoPass {
		t.Errorf("got Boot=%v MRTD=%x order=%s", r.Boot, r.MRTD, r.PageOrder)
	}
	for i, b := range r.Basis {
		if b != measure.RTMRNotPinned {
			t.Errorf("Basis[%d] = %s", i, b)
		}
	}
}

func TestTDXErrors(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		in   measure.TDXInputs
		want string
	}{
		{"page order", measure.TDXInputs{Firmware: img, PageOrder: "sideways"}, "sideways"},
		{"no metadata", measure.TDXInputs{FirmwareName: "blank.fd", Firmware: make([]byte, 0x10000)}, "blank.fd: offset 0x"},
		{"CODE-only", measure.TDXInputs{FirmwareName: "code.fd", Firmware: img[0x4000:]}, "CODE-only"},
		{"no memory", measure.TDXInputs{Firmware: img, Kernel: []byte("x"), FirmwareMeasures: boolp(true)}, "memory"},
		{"not a kernel", measure.TDXInputs{Firmware: img, KernelName: "k", Kernel: make([]byte, 0x1000), MemoryMiB: 1024, FirmwareMeasures: boolp(true)}, "k: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := measure.TDX(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestBzImageVersion(t *testing.T) {
	k := make([]byte, 0x1000)
	copy(k[0x202:], "HdrS")
	k[0x20e], k[0x20f] = 0x00, 0x02 // version string at 0x200+0x200
	copy(k[0x400:], "6.12.3-amd64 (builder) #1")
	if ma, mi, err := measure.BzImageVersion(k); err != nil || ma != 6 || mi != 12 {
		t.Errorf("BzImageVersion = %d.%d, %v", ma, mi, err)
	}
	k[0x20f] = 0x10 // past the end
	if _, _, err := measure.BzImageVersion(k); err == nil {
		t.Error("pointer past the end accepted")
	}
}

func TestQEMULoadOptions(t *testing.T) {
	got := measure.QEMULoadOptions("a b", true)
	want := "i\x00n\x00i\x00t\x00r\x00d\x00=\x00i\x00n\x00i\x00t\x00r\x00d\x00 \x00a\x00 \x00b\x00\x00\x00"
	if string(got) != want {
		t.Errorf("QEMULoadOptions = %q", got)
	}
	if got := measure.QEMULoadOptions("", false); string(got) != "\x00\x00" {
		t.Errorf("empty = %q", got)
	}
}

func sha384Sum(b []byte) [48]byte { return sha512.Sum384(b) }

// TestCFVEventData: the CFV event's data as edk2 logs it. The expected
// bytes are event 2 of go-eventlog's cos-113-intel-tdx.bin (a real GCE TD,
// whose 128 KiB CFV at 0xffe00000 is named 48DB5E17-…); the synthetic image
// reproduces that layout.
func TestCFVEventData(t *testing.T) {
	img, md, err := ovmftest.TDXFirmware(ovmftest.TDXOptions{VarsSize: 0x20000, CodeSize: 0x1e0000})
	if err != nil {
		t.Fatal(err)
	}
	copy(img[40:], "_FVH")
	img[52], img[53] = 0x48, 0 // ExtHeaderOffset
	name, _ := hex.DecodeString("175edb487c702d4791cd1613e7ef51b0")
	copy(img[0x48:], name)
	e, ok, err := measure.CFVEvent(img, md)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := "2946762834384442354531372d373037432d343732442d393143442d31363133453745463531423029000000e0ff000000000000020000000000"
	if got := hex.EncodeToString(e.Data); got != want {
		t.Errorf("CFV event data\n got %s\nwant %s", got, want)
	}
	if e.Digest != sha384Sum(img[:0x20000]) {
		t.Errorf("CFV digest %x", e.Digest)
	}
	// Without an extended header the description is edk2's template.
	img[52] = 0
	if e, _, _ = measure.CFVEvent(img, md); !strings.Contains(string(e.Data), "Fv(XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX)\x00") {
		t.Errorf("template data %q", e.Data)
	}
}

// TestTDXWorkloadRTMR3: the runner's workload events land in RTMR3 on top of
// the boot; the value is the runner's own replay (measure.PredictWorkload,
// the encoder the runner extends with).
func TestTDXWorkloadRTMR3(t *testing.T) {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	w := measure.WorkloadRef{
		Image:        "registry.example/app@sha256:" + strings.Repeat("ab", 32),
		ConfigDigest: "sha256:" + strings.Repeat("cd", 32),
		Args:         []string{"serve"},
	}
	r, err := measure.TDX(measure.TDXInputs{Firmware: img, Workload: &w})
	if err != nil {
		t.Fatal(err)
	}
	_, v, err := measure.PredictWorkload(w)
	if err != nil {
		t.Fatal(err)
	}
	if r.RTMR[3] != v.RTMR || r.Basis[3] != measure.RTMRPredicted || len(r.WorkloadEvents) != 6 {
		t.Errorf("RTMR3 %x (%s, %d events), runner replay %x", r.RTMR[3], r.Basis[3], len(r.WorkloadEvents), v.RTMR)
	}
	w.Image = "registry.example/app:latest"
	if _, err := measure.TDX(measure.TDXInputs{Firmware: img, Workload: &w}); err == nil || !strings.Contains(err.Error(), "RTMR3") {
		t.Errorf("tag without digest: %v", err)
	}
}
