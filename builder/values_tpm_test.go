package builder

import (
	"bytes"
	"os"
	"testing"

	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

// TestTPMValuesManifestRoundTrip computes a tpm shape's manifest values
// from Debian's OVMF and kernel and rebuilds the prediction from them, as
// `mkcvm explain --manifest` does.
func TestTPMValuesManifestRoundTrip(t *testing.T) {
	code, err := os.ReadFile(vmtest.OVMFCode)
	if err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	vars, err := os.ReadFile(vmtest.OVMFVars)
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := os.ReadFile(vmtest.DebianKernel(t))
	if err != nil {
		t.Fatal(err)
	}
	in := &MeasureInputs{FirmwareCode: code, FirmwareVars: vars, Kernel: kernel, Initrd: []byte("initrd"), Cmdline: "console=ttyS0"}
	ms, err := ComputeShape(in, Shape{Name: "tpm-q35", Platform: "tpm", Machine: "q35", VCPUs: 1, MemoryMiB: 1024})
	if err != nil {
		t.Fatal(err)
	}
	v := ms.TPM
	if v == nil || v.Basis["0"] != measure.BasisNotPinned || v.Basis["4"] != measure.BasisPredicted || v.Basis["10"] != measure.BasisNotPinned {
		t.Fatalf("basis %v", v)
	}
	if _, ok := v.PCRs["sha384"]["0"]; ok {
		t.Errorf("PCR0 pinned without a profile")
	}
	if len(v.PCRs["sha256"]) != 9 || len(v.PCRs["sha384"]) != 9 {
		t.Errorf("pinned %d sha256 and %d sha384 PCRs, want 1-9", len(v.PCRs["sha256"]), len(v.PCRs["sha384"]))
	}
	m := &manifest.Manifest{Schema: manifest.SchemaVersion, Recipe: manifest.Recipe{Name: "t", SHA256: vmtest.SHA256Hex(nil)}, Shapes: []manifest.Shape{ms}}
	raw, err := manifest.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := manifest.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PredictionFromManifest(back.Shapes[0].TPM)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := PredictTPM(TPMRequest{Code: code, Vars: vars, Kernel: kernel, Initrd: []byte("initrd"), Cmdline: "console=ttyS0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != len(orig.Events) {
		t.Fatalf("%d events from the manifest, %d predicted", len(p.Events), len(orig.Events))
	}
	for i := range p.Events {
		a, b := p.Events[i], orig.Events[i]
		if a.PCR != b.PCR || a.Type != b.Type || !bytes.Equal(a.Data, b.Data) || (a.Source == measure.SourceUnknown) != (b.Source == measure.SourceUnknown) {
			t.Errorf("event %d: manifest %d %s, predicted %d %s", i+1, a.PCR, a.Type, b.PCR, b.Type)
		}
		for _, d := range b.Digests {
			if b.Source != measure.SourceUnknown && !bytes.Equal(a.Digest(d.Alg), d.Value) {
				t.Errorf("event %d %s digest differs", i+1, d.Alg)
			}
		}
	}
	for _, alg := range []measure.HashAlg{measure.AlgSHA256, measure.AlgSHA384} {
		for pcr, val := range orig.PCRs[alg] {
			if !bytes.Equal(p.PCRs[alg][pcr], val) {
				t.Errorf("%s PCR%d differs after the round trip", alg, pcr)
			}
		}
	}
}
