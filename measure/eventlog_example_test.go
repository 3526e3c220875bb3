package measure_test

import (
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/measure"
)

// ExampleParseEventLog replays the firmware event log of a real direct
// boot (QEMU 7.2, Debian OVMF, swtpm) and prints PCR 7, which the guest read
// from the TPM as 65caf8dd…3068 (testdata/provenance/tpm.md, boot b1).
func ExampleParseEventLog() {
	raw, err := os.ReadFile("testdata/tpm/q35-1024m-1cpu.eventlog")
	if err != nil {
		fmt.Println(err)
		return
	}
	log, err := measure.ParseEventLog("q35-1024m-1cpu.eventlog", raw)
	if err != nil {
		fmt.Println(err)
		return
	}
	pcr7, err := log.ReplayPCR(measure.AlgSHA256, 7)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d events, banks %v\n", len(log.Events), log.Algs())
	fmt.Printf("PCR7 %x\n", pcr7)
	fmt.Println(measure.DescribeEvent(&log.Events[9]))
	// Output:
	// 24 events, banks [sha1 sha256 sha384 sha512]
	// PCR7 65caf8dd1e0ea7a6347b635d2b379c93b9a1351edc2afc3ecda700e534eb3068
	// PE image (8222656 bytes) loaded from VenMedia(1428f772-b64a-441e-b8c3-9ebdd7f893c7)/File(kernel)
}
