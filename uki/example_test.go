package uki_test

import (
	"crypto/sha256"
	"fmt"

	"github.com/mkcvm/mkcvm/uki"
)

// ExampleAssemble builds a UKI around a synthetic stub; the digest pins the
// layout (a change in alignment, order or header updates changes it).
func ExampleAssemble() {
	stub := fakePE(uki.MachineAMD64, ".text", ".sbat")
	img, err := uki.Assemble("stub", stub, []uki.Section{
		{Name: uki.SectionOSRel, Data: []byte("ID=mkcvm\n")},
		{Name: uki.SectionCmdline, Data: []byte("console=ttyS0")},
		{Name: uki.SectionLinux, Data: fakePE(uki.MachineAMD64, ".text")},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, _ := uki.ParsePE("uki", img)
	for _, s := range p.Sections {
		fmt.Printf("%-8s va=0x%05x size=0x%04x file=0x%04x\n", s.Name, s.VirtualAddress, s.VirtualSize, s.PointerToRawData)
	}
	fmt.Printf("%d bytes, sha256 %x\n", len(img), sha256.Sum256(img))
	// Output:
	// .text    va=0x01000 size=0x0010 file=0x0400
	// .sbat    va=0x02000 size=0x0010 file=0x0600
	// .osrel   va=0x03000 size=0x0009 file=0x0800
	// .cmdline va=0x04000 size=0x000d file=0x0a00
	// .linux   va=0x05000 size=0x0600 file=0x0c00
	// 4608 bytes, sha256 8ac673c69d666e01466cbcb561ce5c1cda182716fbf4f93661e28c704756c8ba
}
