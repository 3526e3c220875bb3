package measure_test

import (
	"fmt"

	"github.com/mkcvm/mkcvm/measure"
)

// The workload PCR value a verifier expects, from a recipe's workload
// reference alone.
func ExamplePredictWorkload() {
	events, v, err := measure.PredictWorkload(measure.WorkloadRef{
		Image:        "10.0.2.100/test/hello@sha256:53f78453ab22a887e37e8f031dee1689d425541e4fde1dc72a86a4c64b15c815",
		ConfigDigest: "sha256:a82215235266652b8b92190a60db3c4452a47bab7fb7eae94059e59445f732ab",
		Args:         []string{"--from", "the recipe"},
		Env:          []string{"GREETING=hello-e2e"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range events {
		fmt.Println(e)
	}
	fmt.Printf("PCR %d sha256: %x\n", measure.WorkloadPCR, v.PCRSHA256)
	// Output:
	// image-ref: 10.0.2.100/test/hello@sha256:53f78453ab22a887e37e8f031dee1689d425541e4fde1dc72a86a4c64b15c815
	// manifest-digest: sha256:53f78453ab22a887e37e8f031dee1689d425541e4fde1dc72a86a4c64b15c815
	// config-digest: sha256:a82215235266652b8b92190a60db3c4452a47bab7fb7eae94059e59445f732ab
	// args: ["--from" "the recipe"]
	// env: ["GREETING=hello-e2e"]
	// separator
	// PCR 15 sha256: 2ef121f52be5f9362278171e51ec251dc4273a80108a119970ed9882aa43e594
}
