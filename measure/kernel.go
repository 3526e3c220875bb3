package measure

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/mkcvm/mkcvm/ovmf"
)

// QEMU's x86 direct kernel boot (-kernel/-initrd/-append).
//
// QEMU does not hand OVMF the kernel file unchanged: x86_load_linux (QEMU 7.2
// hw/i386/x86.c) edits the Linux boot-protocol setup header of its copy
// (Linux Documentation/arch/x86/boot.rst, "The Real-Mode Kernel Header") and
// serves setup + kernel through fw_cfg; OVMF's QemuKernelLoaderFsDxe
// reassembles them and LoadImage measures the result. So the PCR 4 digest of
// the kernel depends on the command line (vga=), the initrd size and the
// guest's memory below 4 GiB, not only on the vmlinuz bytes.

// Setup-header offsets (boot.rst, "The Real-Mode Kernel Header").
const (
	bootSetupSects    = 0x1f1
	bootVidMode       = 0x1fa
	bootHeaderMagic   = 0x202 // "HdrS"
	bootVersion       = 0x206
	bootTypeOfLoader  = 0x210
	bootLoadflags     = 0x211
	bootRamdiskImage  = 0x218
	bootRamdiskSize   = 0x21c
	bootHeapEndPtr    = 0x224
	bootCmdLinePtr    = 0x228
	bootInitrdAddrMax = 0x22c
	bootXloadflags    = 0x236
	// qemuHeaderBytes is how much of the file QEMU 7.2 reads into its
	// header buffer and copies back over the setup (uint8_t header[8192]).
	qemuHeaderBytes = 8192
	// xlfCanBeLoadedAbove4G is XLF_CAN_BE_LOADED_ABOVE_4G in xloadflags.
	xlfCanBeLoadedAbove4G = 1 << 1
	loadflagsLoadedHigh   = 0x01
	loadflagsCanUseHeap   = 0x80
	// qemuTypeOfLoader: "High nybble = B reserved for QEMU".
	qemuTypeOfLoader = 0xb0
	// QEMU's fixed load addresses for a protocol >= 2.02 bzImage.
	qemuRealAddr    = 0x10000
	qemuCmdlineAddr = 0x20000
	// QEMUACPIDataSize is the reserved ACPI area QEMU's pc and q35 machines
	// (since 2.x) keep below the top of low memory (pcmc->acpi_data_size =
	// 0x20000 + 0x8000).
	QEMUACPIDataSize = 0x28000
)

// QEMULinuxLoad is what x86_load_linux's header edits depend on.
type QEMULinuxLoad struct {
	Cmdline string // the -append string
	// Initrd reports whether -initrd is given; InitrdSize is its size.
	Initrd     bool
	InitrdSize int64
	// BelowFourG is the guest RAM below 4 GiB in bytes (see QEMUBelow4G).
	BelowFourG uint64
	// ACPIDataSize is the machine's ACPI data size; 0 means QEMUACPIDataSize.
	ACPIDataSize uint64
}

// QEMUBelow4G returns the RAM QEMU 7.2 maps below 4 GiB for machine type
// machine ("q35", "pc", or a versioned pc-q35-*/pc-i440fx-*) and memMiB of RAM
// (pc_q35_init and pc_init1 in hw/i386/pc_q35.c and pc_piix.c, default
// max-ram-below-4g and gigabyte alignment).
func QEMUBelow4G(machine string, memMiB int) (uint64, error) {
	if memMiB <= 0 {
		return 0, fmt.Errorf("memory %d MiB: must be positive", memMiB)
	}
	ram := uint64(memMiB) << 20
	var lowmem uint64
	switch {
	case machine == "q35" || strings.HasPrefix(machine, "pc-q35"):
		lowmem = 0xb0000000
		if ram >= 0xb0000000 {
			lowmem = 0x80000000
		}
	case machine == "pc" || strings.HasPrefix(machine, "pc-i440fx") || strings.HasPrefix(machine, "pc-"):
		lowmem = 0xe0000000
		if ram >= 0xe0000000 {
			lowmem = 0xc0000000
		}
	default:
		return 0, fmt.Errorf("machine %q: only q35 and pc (i440fx) are modelled", machine)
	}
	return min(ram, lowmem), nil
}

// QEMUPatchKernel returns the kernel image as QEMU 7.2 hands it to OVMF for
// a direct boot: the file with its setup header edited by x86_load_linux.
// input names the kernel in errors.
func QEMUPatchKernel(input string, kernel []byte, p QEMULinuxLoad) ([]byte, error) {
	if len(kernel) < bootXloadflags+2 {
		return nil, &ovmf.FormatError{Input: input, Field: "setup header", Reason: fmt.Sprintf("file is %d bytes, too short for a bzImage", len(kernel))}
	}
	if string(kernel[bootHeaderMagic:bootHeaderMagic+4]) != "HdrS" {
		return nil, &ovmf.FormatError{Input: input, Offset: bootHeaderMagic, Field: "header", Reason: fmt.Sprintf("%q, want \"HdrS\" (not a Linux bzImage)", kernel[bootHeaderMagic:bootHeaderMagic+4])}
	}
	protocol := binary.LittleEndian.Uint16(kernel[bootVersion:])
	if protocol < 0x202 || kernel[bootLoadflags]&loadflagsLoadedHigh == 0 {
		return nil, &ovmf.FormatError{Input: input, Offset: bootVersion, Field: "version", Reason: fmt.Sprintf("boot protocol 0x%x or low-loaded kernel: only protocol >= 2.02 bzImages are modelled", protocol)}
	}
	setup := (int(kernel[bootSetupSects]) + 1) * 512
	if kernel[bootSetupSects] == 0 {
		setup = 5 * 512
	}
	if setup > len(kernel) {
		return nil, &ovmf.FormatError{Input: input, Offset: bootSetupSects, Field: "setup_sects", Reason: fmt.Sprintf("setup of %d bytes larger than the %d-byte file", setup, len(kernel))}
	}
	out := bytes.Clone(kernel)
	h := out[:min(qemuHeaderBytes, setup)]
	put32 := func(off int, v uint32) { binary.LittleEndian.PutUint32(h[off:], v) }
	put16 := func(off int, v uint16) { binary.LittleEndian.PutUint16(h[off:], v) }

	initrdMax := uint64(0x37ffffff)
	switch {
	case protocol >= 0x20c && binary.LittleEndian.Uint16(kernel[bootXloadflags:])&xlfCanBeLoadedAbove4G != 0:
		initrdMax = 0xffffffff
	case protocol >= 0x203:
		initrdMax = uint64(binary.LittleEndian.Uint32(kernel[bootInitrdAddrMax:]))
	}
	acpi := p.ACPIDataSize
	if acpi == 0 {
		acpi = QEMUACPIDataSize
	}
	if p.BelowFourG <= acpi {
		return nil, fmt.Errorf("memory below 4G 0x%x: smaller than the ACPI area", p.BelowFourG)
	}
	if initrdMax >= p.BelowFourG-acpi {
		initrdMax = p.BelowFourG - acpi - 1
	}
	put32(bootCmdLinePtr, qemuCmdlineAddr)
	if mode, ok := qemuVGAMode(p.Cmdline); ok {
		put16(bootVidMode, mode)
	}
	h[bootTypeOfLoader] = qemuTypeOfLoader
	h[bootLoadflags] |= loadflagsCanUseHeap
	put16(bootHeapEndPtr, qemuCmdlineAddr-qemuRealAddr-0x200)
	if p.Initrd {
		if p.InitrdSize < 0 || uint64(p.InitrdSize) >= initrdMax {
			return nil, fmt.Errorf("initrd of %d bytes does not fit below 0x%x", p.InitrdSize, initrdMax)
		}
		addr := (initrdMax - uint64(p.InitrdSize)) &^ 4095
		put32(bootRamdiskImage, uint32(addr))
		put32(bootRamdiskSize, uint32(p.InitrdSize))
	}
	return out, nil
}

// qemuVGAMode mirrors QEMU's "vga=" handling: the first "vga=" anywhere in
// the command line, with normal/ext/ask keywords or a C integer (strtol base
// 0, prefix only).
func qemuVGAMode(cmdline string) (uint16, bool) {
	i := strings.Index(cmdline, "vga=")
	if i < 0 {
		return 0, false
	}
	v := cmdline[i+4:]
	switch {
	case strings.HasPrefix(v, "normal"):
		return 0xffff, true
	case strings.HasPrefix(v, "ext"):
		return 0xfffe, true
	case strings.HasPrefix(v, "ask"):
		return 0xfffd, true
	}
	return uint16(strtol0(v)), true
}

// strtol0 parses the longest C integer prefix of s in base 0 (0x hex,
// leading 0 octal), like strtol(s, NULL, 0); 0 when there is none.
func strtol0(s string) int64 {
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg, s = s[0] == '-', s[1:]
	}
	base, digits := 10, "0123456789"
	switch {
	case len(s) > 2 && (s[:2] == "0x" || s[:2] == "0X") && strings.ContainsRune("0123456789abcdefABCDEF", rune(s[2])):
		base, digits, s = 16, "0123456789abcdefABCDEF", s[2:]
	case strings.HasPrefix(s, "0"):
		base, digits = 8, "01234567"
	}
	n := 0
	for n < len(s) && strings.IndexByte(digits, s[n]) >= 0 {
		n++
	}
	v, _ := strconv.ParseInt(s[:n], base, 64)
	if neg {
		v = -v
	}
	return v
}

// KernelDigest returns the PCR 4 digest OVMF records for the kernel in a
// QEMU direct boot: the EDK2 Authenticode hash (no padding) of the image
// QEMUPatchKernel produces.
func KernelDigest(input string, kernel []byte, p QEMULinuxLoad, alg HashAlg) ([]byte, error) {
	img, err := QEMUPatchKernel(input, kernel, p)
	if err != nil {
		return nil, err
	}
	return PEImageDigest(input, img, alg, PadNone)
}
