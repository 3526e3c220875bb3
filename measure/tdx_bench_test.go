package measure_test

import (
	"crypto/sha512"
	"testing"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

// tdxBenchInputs is the default recipe's TDX work: Debian's OVMF.fd, the
// Debian kernel and a 4 MiB initrd, predicted as a CC-measuring firmware
// and stub would measure them (so RTMR1 hashes the kernel and RTMR2 the
// initrd; detection of the driver is not part of the timed work).
func tdxBenchInputs(b *testing.B) (measure.TDXInputs, int64) {
	in := measure.TDXInputs{
		FirmwareName: "OVMF.fd", Firmware: ovmftest.DebianOVMF(b),
		Kernel: snpDebFile(b, "vmlinuz-6.1.0-50-amd64"), Initrd: make([]byte, 4<<20),
		Cmdline: "console=ttyS0 panic=-1", MemoryMiB: 2048,
		FirmwareMeasures: boolp(true), StubMeasures: boolp(true),
	}
	for i := range in.Initrd {
		in.Initrd[i] = byte(i * 7)
	}
	return in, int64(len(in.Firmware) + len(in.Kernel) + len(in.Initrd))
}

// BenchmarkTDXMRTDAndRTMRs times MRTD + RTMR0-3 prediction; compare its
// MB/s with BenchmarkTDXSHA384Limit (one SHA-384 pass over the same
// firmware, kernel and initrd bytes). MRTD alone hashes 1.53 bytes per
// extended firmware byte (128-byte headers per 256-byte chunk).
func BenchmarkTDXMRTDAndRTMRs(b *testing.B) {
	in, n := tdxBenchInputs(b)
	b.SetBytes(n)
	b.ResetTimer()
	for b.Loop() {
		if _, err := measure.TDX(in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTDXSHA384Limit is the physical limit: one SHA-384 pass over the
// firmware, kernel and initrd.
func BenchmarkTDXSHA384Limit(b *testing.B) {
	in, n := tdxBenchInputs(b)
	b.SetBytes(n)
	b.ResetTimer()
	for b.Loop() {
		h := sha512.New384()
		h.Write(in.Firmware)
		h.Write(in.Kernel)
		h.Write(in.Initrd)
		h.Sum(nil)
	}
}

// BenchmarkTDXMRTD times MRTD alone on Debian's OVMF.fd.
func BenchmarkTDXMRTD(b *testing.B) {
	fw := ovmftest.DebianOVMF(b)
	b.SetBytes(int64(len(fw)))
	for b.Loop() {
		if _, _, err := measure.TDXFirmwareMRTD("OVMF.fd", fw, measure.PageOrderSingle); err != nil {
			b.Fatal(err)
		}
	}
}
