package uki_test

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/uki"
)

// kernelPE is a stand-in .linux payload: any x86-64 PE image.
var kernelPE = fakePE(uki.MachineAMD64, ".text")

func testSections() []uki.Section {
	return []uki.Section{
		{Name: uki.SectionOSRel, Data: []byte("ID=mkcvm\n")},
		{Name: uki.SectionCmdline, Data: []byte("console=ttyS0")},
		{Name: uki.SectionInitrd, Data: bytes.Repeat([]byte{0xa5}, 5000)},
		{Name: uki.SectionLinux, Data: kernelPE},
	}
}

// TestAssembleDebugPE reads the assembled image back with the standard
// library's debug/pe, an independent PE parser.
func TestAssembleDebugPE(t *testing.T) {
	stub := fakePE(uki.MachineAMD64, ".text", ".sbat")
	out, err := uki.Assemble("stub", stub, testSections())
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sections) != 6 {
		t.Fatalf("%d sections", len(f.Sections))
	}
	var lastEnd uint32
	for i, want := range testSections() {
		s := f.Sections[2+i]
		got, err := s.Data()
		if err != nil {
			t.Fatal(err)
		}
		if s.Name != want.Name || s.VirtualSize != uint32(len(want.Data)) || !bytes.Equal(got[:s.VirtualSize], want.Data) {
			t.Errorf("section %d: %s vsize %d, want %s with %d bytes", i, s.Name, s.VirtualSize, want.Name, len(want.Data))
		}
		if s.VirtualAddress%uki.MinSectionAlignment != 0 || s.VirtualAddress < lastEnd || s.Offset%0x200 != 0 {
			t.Errorf("section %s at VA 0x%x file 0x%x: misaligned or overlapping", s.Name, s.VirtualAddress, s.Offset)
		}
		lastEnd = s.VirtualAddress + s.VirtualSize
	}
	oh := f.OptionalHeader.(*pe.OptionalHeader64)
	if oh.SizeOfImage%oh.SectionAlignment != 0 || oh.SizeOfImage < lastEnd {
		t.Errorf("SizeOfImage 0x%x, last section ends at 0x%x", oh.SizeOfImage, lastEnd)
	}
	if want := uki.Checksum(out, 0x40+24+64); oh.CheckSum != want || want == 0 {
		t.Errorf("CheckSum 0x%x, want 0x%x", oh.CheckSum, want)
	}
	again, _ := uki.Assemble("stub", stub, testSections())
	if !bytes.Equal(out, again) {
		t.Error("two assemblies differ")
	}
}

func TestAssembleErrors(t *testing.T) {
	stub := fakePE(uki.MachineAMD64, ".text")
	signed := bytes.Clone(stub)
	binary.LittleEndian.PutUint32(signed[0x40+24+112+4*8+4:], 0x100)
	trailing := append(bytes.Clone(stub), 1, 2, 3)
	many := make([]uki.Section, 30)
	for i := range many {
		many[i] = uki.Section{Name: fmt.Sprintf(".s%d", i), Data: []byte{1}}
	}
	for _, tc := range []struct {
		name     string
		stub     []byte
		secs     []uki.Section
		sentinel error
		msg      string
	}{
		{"kernel not a PE", stub, []uki.Section{{Name: uki.SectionLinux, Data: []byte("\x7fELF not a kernel")}}, uki.ErrNotPE, "kernel is not an x86-64 EFI-stub PE image"},
		{"arm64 kernel", stub, []uki.Section{{Name: uki.SectionLinux, Data: fakePE(0xaa64, ".text")}}, uki.ErrWrongMachine, ".linux (kernel)"},
		{"arm64 stub", fakePE(0xaa64, ".text"), testSections(), uki.ErrWrongMachine, "COFF header.Machine"},
		{"section name taken by stub", stub, []uki.Section{{Name: ".text", Data: []byte{1}}}, uki.ErrOverlap, "already has a section"},
		{"section twice", stub, []uki.Section{{Name: ".osrel", Data: []byte{1}}, {Name: ".osrel", Data: []byte{2}}}, uki.ErrOverlap, `section[1] ".osrel"`},
		{"signed stub", signed, testSections(), uki.ErrSigned, "Certificate Table"},
		{"trailing data", trailing, testSections(), nil, "trailing data"},
		{"no header room", stub, many, nil, "no room"},
		{"empty section", stub, []uki.Section{{Name: ".cmdline"}}, nil, "empty payload"},
		{"long name", stub, []uki.Section{{Name: ".toolongname", Data: []byte{1}}}, nil, "1 to 8 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := uki.Assemble("stub.efi", tc.stub, tc.secs)
			if err == nil || out != nil {
				t.Fatalf("Assemble succeeded (%d bytes)", len(out))
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("err = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

// debianStub extracts linuxx64.efi.stub from the systemd-boot-efi .deb in
// $MKCVM_DEBDIR with dpkg-deb.
func debianStub(t *testing.T) []byte {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(os.Getenv("MKCVM_DEBDIR"), "systemd-boot-efi_*_amd64.deb"))
	if len(debs) == 0 {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal("no systemd-boot-efi .deb in MKCVM_DEBDIR (run `make debs`)")
		}
		t.Skip("no systemd-boot-efi .deb in MKCVM_DEBDIR")
	}
	dir := t.TempDir()
	const member = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	if b, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "./$3"`, "sh", debs[len(debs)-1], dir, member).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	b, err := os.ReadFile(filepath.Join(dir, member))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAssembleDebianStubObjdump assembles around Debian's systemd stub and
// checks the section table with binutils' objdump, as ukify's users do.
func TestAssembleDebianStubObjdump(t *testing.T) {
	stub := debianStub(t)
	// The linker's own CheckSum of the stub is a known answer for Checksum.
	p, err := uki.ParsePE("stub", stub)
	if err != nil {
		t.Fatal(err)
	}
	csOff := p.SectionTableOffset() - 240 + 64 // optional header (240 bytes) + CheckSum offset
	if want, got := binary.LittleEndian.Uint32(stub[csOff:]), uki.Checksum(stub, csOff); got != want {
		t.Errorf("Checksum(stub) = 0x%x, the stub says 0x%x", got, want)
	}
	out, err := uki.Assemble("linuxx64.efi.stub", stub, testSections())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "uki.efi")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command("objdump", "-h", path).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump -h: %v\n%s", err, dump)
	}
	got := map[string][3]uint64{} // size, vma, file offset
	for _, line := range strings.Split(string(dump), "\n") {
		var idx int
		var name string
		var size, vma, lma, off uint64
		if n, _ := fmt.Sscanf(strings.TrimSpace(line), "%d %s %x %x %x %x", &idx, &name, &size, &vma, &lma, &off); n == 6 {
			got[name] = [3]uint64{size, vma, off}
		}
	}
	for _, name := range []string{".text", ".sbat", ".sdmagic"} {
		if _, ok := got[name]; !ok {
			t.Errorf("objdump lost stub section %s:\n%s", name, dump)
		}
	}
	prevEnd := uint64(0)
	for _, s := range testSections() {
		g, ok := got[s.Name]
		if !ok {
			t.Errorf("objdump does not list %s:\n%s", s.Name, dump)
			continue
		}
		if g[0] != uint64(len(s.Data)) || g[1]%4096 != 0 || g[1] < prevEnd || !bytes.Equal(out[g[2]:g[2]+g[0]], s.Data) {
			t.Errorf("%s: objdump size 0x%x vma 0x%x off 0x%x, want size 0x%x page-aligned after 0x%x with the payload", s.Name, g[0], g[1], g[2], len(s.Data), prevEnd)
		}
		prevEnd = g[1] + g[0]
	}
}
