package measure_test

import (
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/measure"
)

// ExampleNewSNPLaunch computes the SNP launch digest of the AmdSevX64
// fixture without a kernel, 1 vCPU of type EPYC-Milan under QEMU. The value
// is what sev-snp-measure 0.0.13 prints for the same inputs (kat.tsv).
func ExampleNewSNPLaunch() {
	fwBytes, err := os.ReadFile("testdata/snp/ovmf_AmdSev_suffix.bin")
	if err != nil {
		fmt.Println(err)
		return
	}
	fw, err := measure.NewSNPFirmware("OVMF.fd", fwBytes, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	l, err := measure.NewSNPLaunch(fw, nil) // nil: no direct-boot kernel
	if err != nil {
		fmt.Println(err)
		return
	}
	milan, _ := measure.LookupVCPUType("EPYC-Milan")
	d, err := l.Digest(measure.SNPShape{VCPUs: 1, VCPUSig: milan.Sig(), VMM: measure.VMMQEMU, GuestFeatures: 0x1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%x\n", d)
	// Output: 93f767a2bff8fc050ed48cfe6e2dc9bb4c45b2313c48df0159a6b22fdc5633307f93a7ec31cf6fc92a61a2ace3cb9679
}
