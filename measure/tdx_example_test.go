package measure_test

import (
	"fmt"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// ExampleTDX computes the MRTD of a synthetic TDX firmware image in both
// page orders (the values td-shim's MRTD script gives for it).
func ExampleTDX() {
	img, _, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		panic(err)
	}
	for _, order := range []measure.TDXPageOrder{measure.PageOrderSingle, measure.PageOrderTwoPass} {
		r, err := measure.TDX(measure.TDXInputs{FirmwareName: "synth-a.fd", Firmware: img, PageOrder: order})
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-8s %x\n", r.PageOrder, r.MRTD)
	}
	// Output:
	// single   3397909b845d1aca41740e648ba73b64b7a314b97a4faef0062e2c318893cc631c32beb61c3b7acf1df50d47de81f5af
	// two-pass d7fe8ea122bf14304462e4571a042ab2663b9010895bb478aadf609e15a865ed250fb3dad4ce343f4f0a71f733660e51
}
