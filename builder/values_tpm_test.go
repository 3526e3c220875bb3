package builder

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
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

// TestTPMShapeWorkload: with a workload the tpm shape pins PCR 15 in every
// bank it records and lists the runner's events in workload_log. The
// expected values are the independent Python replay of the runner's
// known-answer workload (testdata/provenance/runner.md): PCR 15 sha256 and
// sha384, and the SHA-256 of the CEL-style log the runner serves, which the
// test reassembles from the manifest's workload_log records.
func TestTPMShapeWorkload(t *testing.T) {
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
	const (
		wantPCR256 = "c4ba6f0115a19c61f8e7ed0bd2e2b2c1b5ae456dafcaba625eff6ec19d40c767"
		wantPCR384 = "895e5662d1e215caffc547788a809a0d723798fea632fe05713003450ab550e59252e1023da9d2113873ed4beb0d23bc"
		wantLog256 = "9f624ff8df5127640b0ee074073a754e63fff768788fe77c97724a380e946d7b"
	)
	w := &Workload{Image: "registry.example/app@sha256:" + strings.Repeat("ab", 32), Config: "sha256:" + strings.Repeat("cd", 32),
		Args: []string{"/hello", "--greeting", "hi there"}, Env: []string{"A=1", "B=two words"}}
	shape := Shape{Name: "tpm-q35", Platform: "tpm", Machine: "q35", VCPUs: 1, MemoryMiB: 1024}
	in := &MeasureInputs{FirmwareCode: code, FirmwareVars: vars, Kernel: kernel, Initrd: []byte("initrd"), Cmdline: "console=ttyS0"}
	plain, err := ComputeShape(in, shape)
	if err != nil {
		t.Fatal(err)
	}
	in.Workload = w
	ms, err := ComputeShape(in, shape)
	if err != nil {
		t.Fatal(err)
	}
	// Round trip through the canonical encoding: the schema accepts the
	// new field.
	m := &manifest.Manifest{Schema: manifest.SchemaVersion, Recipe: manifest.Recipe{Name: "t", SHA256: vmtest.SHA256Hex(nil)}, Shapes: []manifest.Shape{ms}}
	raw, err := manifest.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	back, err := manifest.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	v := back.Shapes[0].TPM
	if got := v.PCRs["sha256"]["15"]; got != wantPCR256 {
		t.Errorf("sha256 PCR15 %s, independent replay %s", got, wantPCR256)
	}
	if got := v.PCRs["sha384"]["15"]; got != wantPCR384 {
		t.Errorf("sha384 PCR15 %s, independent replay %s", got, wantPCR384)
	}
	if v.Basis["15"] != measure.BasisPredicted || !strings.Contains(v.Why["15"], w.Image) || !strings.Contains(v.Why["15"], w.Config) {
		t.Errorf("PCR15 basis %q why %q", v.Basis["15"], v.Why["15"])
	}
	// Everything else is the workload-free prediction.
	for bank, vals := range plain.TPM.PCRs {
		if len(v.PCRs[bank]) != len(vals)+1 {
			t.Errorf("%s: %d PCRs, want %d + PCR15", bank, len(v.PCRs[bank]), len(vals))
		}
		for k, x := range vals {
			if v.PCRs[bank][k] != x {
				t.Errorf("%s PCR%s changed by the workload", bank, k)
			}
		}
	}
	if len(v.EventLog) != len(plain.TPM.EventLog) {
		t.Errorf("firmware event log has %d events, want %d", len(v.EventLog), len(plain.TPM.EventLog))
	}
	// workload_log: the runner's served log, rebuilt record by record as
	// docs/runner.md describes it (recnum, pcr, digests, content TLVs).
	tlv := func(typ byte, val []byte) []byte {
		return append(binary.BigEndian.AppendUint32([]byte{typ}, uint32(len(val))), val...)
	}
	types := []string{"image-ref", "manifest-digest", "config-digest", "args", "env", "separator"}
	if len(v.WorkloadLog) != len(types) {
		t.Fatalf("%d workload events, want %d", len(v.WorkloadLog), len(types))
	}
	var log []byte
	for i, e := range v.WorkloadLog {
		if e.Index != i || e.PCR != 15 || e.Type != types[i] {
			t.Errorf("workload_log[%d]: index %d pcr %d type %q, want %d 15 %q", i, e.Index, e.PCR, e.Type, i, types[i])
		}
		data, err1 := hex.DecodeString(e.Data)
		d256, err2 := hex.DecodeString(e.Digests["sha256"])
		d384, err3 := hex.DecodeString(e.Digests["sha384"])
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("workload_log[%d]: %v", i, err)
		}
		log = append(log, tlv(0, binary.BigEndian.AppendUint64(nil, uint64(i)))...)
		log = append(log, tlv(1, []byte{15})...)
		log = append(log, tlv(3, append(tlv(0x0b, d256), tlv(0x0c, d384)...))...)
		log = append(log, tlv(0x6d, data)...)
	}
	if got := sha256.Sum256(log); hex.EncodeToString(got[:]) != wantLog256 {
		t.Errorf("served-log SHA-256 rebuilt from workload_log %x, independent %s", got, wantLog256)
	}
	// explain --manifest: a quoted PCR 15 equal to the independent value
	// matches; any other value is named.
	p, err := PredictionFromManifest(v)
	if err != nil {
		t.Fatal(err)
	}
	want256, _ := hex.DecodeString(wantPCR256)
	if !bytes.Equal(p.PCRs[measure.AlgSHA256][15], want256) || p.Basis[15] != measure.BasisPredicted {
		t.Errorf("prediction from the manifest: PCR15 %x basis %q", p.PCRs[measure.AlgSHA256][15], p.Basis[15])
	}
	// A workload the runner would refuse is an error naming PCR 15.
	in.Workload = &Workload{Image: "registry.example/app:latest", Config: w.Config}
	if _, err := ComputeShape(in, shape); err == nil || !strings.Contains(err.Error(), "PCR 15") {
		t.Errorf("tag-only workload: %v", err)
	}
}
