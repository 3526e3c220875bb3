package uki_test

import (
	"bytes"
	"testing"

	"github.com/mkcvm/mkcvm/uki"
)

// BenchmarkAssemble assembles a UKI with a 16 MiB payload. The physical
// limit is BenchmarkCopyLimit (one copy of the payload); Assemble copies the
// payload once and reads the output once more for the PE checksum, so
// expect about half its throughput.
func BenchmarkAssemble(b *testing.B) {
	stub := fakePE(uki.MachineAMD64, ".text")
	kernel := append(fakePE(uki.MachineAMD64, ".text"), make([]byte, 16<<20)...)
	secs := []uki.Section{{Name: uki.SectionLinux, Data: kernel}}
	b.SetBytes(int64(len(kernel)))
	for b.Loop() {
		if _, err := uki.Assemble("stub", stub, secs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCopyLimit is one allocation and copy of the same payload.
func BenchmarkCopyLimit(b *testing.B) {
	kernel := append(fakePE(uki.MachineAMD64, ".text"), make([]byte, 16<<20)...)
	b.SetBytes(int64(len(kernel)))
	for b.Loop() {
		_ = bytes.Clone(kernel)
	}
}
