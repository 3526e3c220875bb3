package measure_test

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// MRTD known answers from td-shim's stand-alone td_shim_tee_info_hash.py
// (single order) and the same script with its page loop split in two
// (two-pass order); commands and versions in testdata/provenance/tdx.md.
var mrtdKAT = map[string]map[measure.TDXPageOrder]string{
	"debian-OVMF.fd": {
		measure.PageOrderSingle:  "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47",
		measure.PageOrderTwoPass: "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1",
	},
	"synth-a": {
		measure.PageOrderSingle:  "3397909b845d1aca41740e648ba73b64b7a314b97a4faef0062e2c318893cc631c32beb61c3b7acf1df50d47de81f5af",
		measure.PageOrderTwoPass: "d7fe8ea122bf14304462e4571a042ab2663b9010895bb478aadf609e15a865ed250fb3dad4ce343f4f0a71f733660e51",
	},
	"synth-b": {
		measure.PageOrderSingle:  "3682768e7c027b262ed5f6c39290ae72ef8e2f0d5c2f9d6c42d64976930252ccb90c228f4570724486fbc06c83616e62",
		measure.PageOrderTwoPass: "a1f1f9c60cb9189f0ee5e8ec9cd519927c5906c77758454f01a087c544cae3a7f1294ae043626395941dc9dca78630af",
	},
}

func TestMRTDKnownAnswers(t *testing.T) {
	images := map[string]func(t testing.TB) []byte{"debian-OVMF.fd": ovmftest.DebianOVMF}
	for _, c := range ovmftest.TDXSynthCases() {
		images[c.Name] = func(t testing.TB) []byte {
			img, _, err := ovmftest.TDXFirmware(c.Options)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	for _, name := range []string{"debian-OVMF.fd", "synth-a", "synth-b"} {
		for _, order := range []measure.TDXPageOrder{measure.PageOrderSingle, measure.PageOrderTwoPass} {
			t.Run(name+"/"+string(order), func(t *testing.T) {
				fw := images[name](t)
				got, _, err := measure.TDXFirmwareMRTD(name, fw, order)
				if err != nil {
					t.Fatal(err)
				}
				if want := mrtdKAT[name][order]; hex.EncodeToString(got[:]) != want {
					t.Errorf("MRTD = %x, want %s", got, want)
				}
			})
		}
	}
}

func TestParseTDXPageOrder(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want measure.TDXPageOrder
		err  bool
	}{
		{in: "", want: measure.PageOrderSingle},
		{in: "single", want: measure.PageOrderSingle},
		{in: "two-pass", want: measure.PageOrderTwoPass},
		{in: "twopass", err: true},
	} {
		got, err := measure.ParseTDXPageOrder(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseTDXPageOrder(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestMRTDErrors(t *testing.T) {
	img, md, err := ovmftest.TDXFirmware(ovmftest.TDXSynthCases()[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := measure.MRTD(img, md, "zigzag"); err == nil || !strings.Contains(err.Error(), "zigzag") {
		t.Errorf("unknown order: %v", err)
	}
	// An MR.EXTEND range past the end (metadata parsed from a bigger image).
	if _, err := measure.MRTD(img[:len(img)-0x1000], md, measure.PageOrderSingle); err == nil || !strings.Contains(err.Error(), "section[0] (BFV)") {
		t.Errorf("short image: %v", err)
	}
	// No TDX metadata at all.
	if _, _, err := measure.TDXFirmwareMRTD("zero.fd", make([]byte, 0x10000), measure.PageOrderSingle); !errors.Is(err, ovmf.ErrNoTDXMetadata) || !strings.Contains(err.Error(), "zero.fd: offset 0x") {
		t.Errorf("no metadata: %v", err)
	}
}
