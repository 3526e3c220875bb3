package measure

import (
	"bytes"
	"crypto/sha256"
	"os"
	"testing"
)

// TestPredictDiskBootNoSecureBoot checks the event structure of a disk
// boot without Secure Boot: no authority event, SecureBoot = 0, PCR 11
// covers only the measured sections in the stub's order, and PCRs 12 and 13
// stay zero. The values themselves are proven against a real boot in
// builder/disk_boot_test.go.
func TestPredictDiskBootNoSecureBoot(t *testing.T) {
	code, err := os.ReadFile("/usr/share/OVMF/OVMF_CODE_4M.fd")
	if err != nil {
		t.Skip(err)
	}
	vars, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
	if err != nil {
		t.Skip(err)
	}
	fw, err := AnalyzeOVMF("OVMF_CODE_4M.fd", code)
	if err != nil {
		t.Fatal(err)
	}
	img := fakePEImage(t)
	in := &DiskBoot{
		Firmware: fw, Vars: vars, Disk: fakeGPTDisk(128, 0), UKI: img,
		Sections: []UKISection{ // deliberately not in measurement order
			{".initrd", []byte("initrd")}, {".uname", []byte("6.1")}, {".osrel", []byte("ID=x\n")},
			{".cmdline", []byte("quiet")}, {".linux", img},
		},
		DiskPCI: PCIAddress{Device: 1}, Shell: true, Machine: "q35", MemoryMiB: 1024, VCPUs: 1,
		Algs: []HashAlg{AlgSHA256},
	}
	p, err := PredictDiskBoot(in)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	kernelEvents := 0
	for _, e := range p.Events {
		if e.PCR == 4 && e.Type == EvEFIBootServicesApp {
			kernelEvents++
		}
		if e.Type == EvEFIVariableAuthority {
			t.Error("authority event without Secure Boot")
		}
		if e.PCR == 7 && e.Type == EvEFIVariableDriverConfig && bytes.HasSuffix(e.Data, []byte{0}) && len(e.Data) == 16+16+len(ucs2("SecureBoot"))+1 {
			names = append(names, "SecureBoot=0")
		}
	}
	if kernelEvents != 2 {
		t.Errorf("%d PCR 4 image events, want the UKI and (Secure Boot off) the kernel", kernelEvents)
	}
	if len(names) != 1 {
		t.Errorf("SecureBoot variable event with value 0 not found")
	}
	// PCR 11 by hand: name (ASCII + NUL) then payload, stub order.
	pcr11 := make([]byte, 32)
	for _, s := range [][2]string{{".linux", string(img)}, {".osrel", "ID=x\n"}, {".cmdline", "quiet"}, {".initrd", "initrd"}} {
		n := sha256.Sum256([]byte(s[0] + "\x00"))
		d := sha256.Sum256([]byte(s[1]))
		pcr11 = Extend(AlgSHA256, Extend(AlgSHA256, pcr11, n[:]), d[:])
	}
	if got := p.PCRs[AlgSHA256][11]; !bytes.Equal(got, pcr11) {
		t.Errorf("PCR 11 = %x, want %x", got, pcr11)
	}
	for _, pcr := range []uint32{12, 13} {
		if got := p.PCRs[AlgSHA256][pcr]; !bytes.Equal(got, make([]byte, 32)) || p.Basis[pcr] != BasisPredicted {
			t.Errorf("PCR %d = %x (%s), want zero, predicted", pcr, got, p.Basis[pcr])
		}
	}
	if p.Basis[0] != BasisNotPinned {
		t.Errorf("PCR 0 basis %s without a profile", p.Basis[0])
	}
	if _, err := PredictDiskBoot(&DiskBoot{Firmware: fw, Vars: vars, Disk: make([]byte, 4096), UKI: img}); err == nil {
		t.Error("no GPT: predicted anyway")
	}
}

// fakePEImage returns a minimal PE32+ image (headers only) that
// PEImageDigest accepts.
func fakePEImage(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 0x400)
	copy(b, "MZ")
	b[0x3c] = 0x40
	copy(b[0x40:], "PE\x00\x00")
	b[0x44], b[0x45] = 0x64, 0x86 // AMD64
	b[0x54] = 240                 // SizeOfOptionalHeader
	o := b[0x58:]
	o[0], o[1] = 0x0b, 0x02 // PE32+
	o[60], o[61] = 0x00, 0x04
	o[108] = 16
	if _, err := PEImageDigest("fake", b, AlgSHA256, PadNone); err != nil {
		t.Fatalf("fake PE: %v", err)
	}
	return b
}
