package measure_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// snpBenchInputs are a 4 MiB firmware, an 8 MiB kernel and a 32 MiB initrd.
func snpBenchInputs(b *testing.B) (fw, kernel, initrd []byte) {
	fw, err := ovmftest.Firmware(ovmftest.Options{Size: 4 << 20})
	if err != nil {
		b.Fatal(err)
	}
	kernel, initrd = make([]byte, 8<<20), make([]byte, 32<<20)
	for i := range kernel {
		kernel[i] = byte(i * 7)
	}
	for i := range initrd {
		initrd[i] = byte(i * 13)
	}
	b.SetBytes(int64(len(fw) + len(kernel) + len(initrd)))
	return fw, kernel, initrd
}

// BenchmarkSNPHashLimit is the physical limit of one launch digest: one
// SHA-384 pass over the firmware and one SHA-256 pass over kernel and
// initrd. Compare BenchmarkSNPDigest and BenchmarkSNPMatrix256 with it.
func BenchmarkSNPHashLimit(b *testing.B) {
	fw, kernel, initrd := snpBenchInputs(b)
	for b.Loop() {
		sha512.Sum384(fw)
		sha256.Sum256(kernel)
		sha256.Sum256(initrd)
	}
}

func snpLaunch(b *testing.B, fw, kernel, initrd []byte) *measure.SNPLaunch {
	h := measure.NewSEVHashes(kernel, initrd, "console=ttyS0")
	f, err := measure.NewSNPFirmware("bench.fd", fw, nil)
	if err != nil {
		b.Fatal(err)
	}
	l, err := measure.NewSNPLaunch(f, &h)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// BenchmarkSNPDigest computes one SNP launch digest from the raw inputs.
func BenchmarkSNPDigest(b *testing.B) {
	fw, kernel, initrd := snpBenchInputs(b)
	for b.Loop() {
		l := snpLaunch(b, fw, kernel, initrd)
		if _, err := l.Digest(measure.SNPShape{VCPUs: 4, VCPUSig: 0xa00f11, VMM: measure.VMMQEMU, GuestFeatures: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSNPMatrix256 computes 256 shapes (vCPUs 1..64 x 4 models) from
// the raw inputs, hashing them once.
func BenchmarkSNPMatrix256(b *testing.B) {
	fw, kernel, initrd := snpBenchInputs(b)
	var shapes []measure.SNPShape
	for _, m := range []string{"EPYC-v4", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa"} {
		vt, _ := measure.LookupVCPUType(m)
		for n := 1; n <= 64; n++ {
			shapes = append(shapes, measure.SNPShape{VCPUs: n, VCPUSig: vt.Sig(), VMM: measure.VMMQEMU, GuestFeatures: 1})
		}
	}
	for b.Loop() {
		l := snpLaunch(b, fw, kernel, initrd)
		if _, err := l.Digests(shapes); err != nil {
			b.Fatal(err)
		}
	}
}
