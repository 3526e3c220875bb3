package builder

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mkcvm/mkcvm/manifest"
)

// snpKAT looks up a sev-snp-measure 0.0.13 known answer by its argument
// list (measure/testdata/snp/kat.tsv, see testdata/provenance/snp.md).
func snpKAT(t *testing.T, args string) string {
	t.Helper()
	f, err := os.Open("../measure/testdata/snp/kat.tsv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if d, a, ok := strings.Cut(sc.Text(), "\t"); ok && strings.ReplaceAll(a, "\t", " ") == args {
			return d
		}
	}
	t.Fatalf("no known answer for %q", args)
	return ""
}

func snpFixture(t *testing.T, name string) []byte {
	b, err := os.ReadFile("../measure/testdata/snp/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSNPShapeValues(t *testing.T) {
	amd, x64 := snpFixture(t, "ovmf_AmdSev_suffix.bin"), snpFixture(t, "ovmf_OvmfX64_suffix.bin")
	shape := Shape{Name: "s", Platform: "snp", VCPUs: 1, VCPUType: "EPYC-Milan", VMM: "gce"}
	for _, tc := range []struct {
		name  string
		in    *MeasureInputs
		shape Shape
		want  manifest.Shape
	}{{
		name:  "firmware only",
		in:    &MeasureInputs{Firmware: amd},
		shape: shape,
		want: manifest.Shape{Name: "s", Platform: "snp", VCPUs: 1, VCPUType: "EPYC-Milan", VCPUSig: "0xa00f11", VMM: "gce", GuestFeatures: "0x1",
			SNP: &manifest.SNPValues{Mode: "snp", KernelHashes: true, CoversKernel: false,
				OVMFHash:     snpKAT(t, "--mode snp:ovmf-hash --ovmf ovmf_AmdSev_suffix.bin"),
				LaunchDigest: snpKAT(t, "--mode snp --ovmf ovmf_AmdSev_suffix.bin --vcpus 1 --vcpu-type EPYC-Milan --vmm-type gce")}},
	}, {
		name:  "kernel on firmware without kernel hashes",
		in:    &MeasureInputs{Firmware: x64, Kernel: []byte("kernel"), Cmdline: "console=ttyS0"},
		shape: Shape{Name: "s", Platform: "snp", VCPUs: 1, VCPUSig: "0xa00f11", VMM: "qemu"},
		want: manifest.Shape{Name: "s", Platform: "snp", VCPUs: 1, VCPUSig: "0xa00f11", VMM: "qemu", GuestFeatures: "0x1",
			SNP: &manifest.SNPValues{Mode: "snp", KernelHashes: false, CoversKernel: false,
				LaunchDigest: snpKAT(t, "--mode snp --ovmf ovmf_OvmfX64_suffix.bin --vcpus 1 --vcpu-type EPYC-Milan --vmm-type QEMU")},
			Notes: []string{noteNoKernelHashes}},
	}, {
		name:  "sev firmware only",
		in:    &MeasureInputs{Firmware: amd},
		shape: Shape{Name: "s", Platform: "sev", VCPUs: 1},
		want: manifest.Shape{Name: "s", Platform: "sev", VCPUs: 1,
			SNP: &manifest.SNPValues{Mode: "sev", // sha256sum of the image (plain SEV measures just the firmware)
				LaunchDigest: "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"}},
	}, {
		name:  "seves firmware only, recipe spelling kept",
		in:    &MeasureInputs{Firmware: snpFixture(t, "ovmf_AmdSev_suffix.bin")},
		shape: Shape{Name: "s", Platform: "seves", VCPUs: 4, VCPUType: "EPYC-Rome", VMM: "QEMU"},
		want: manifest.Shape{Name: "s", Platform: "seves", VCPUs: 4, VCPUType: "EPYC-Rome", VCPUSig: "0x830f10", VMM: "QEMU",
			SNP: &manifest.SNPValues{Mode: "seves", LaunchDigest: snpKAT(t, "--mode seves --ovmf ovmf_AmdSev_suffix.bin --vcpus 4 --vcpu-type EPYC-Rome --vmm-type QEMU")}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ComputeShape(tc.in, tc.shape)
			if err != nil {
				t.Fatal(err)
			}
			if tc.want.SNP.OVMFHash == "" {
				got.SNP.OVMFHash = ""
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
