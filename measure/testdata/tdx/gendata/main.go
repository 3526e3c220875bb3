// Command gendata writes the synthetic TDX firmware images the measure
// tests build in memory, so an independent tool can measure them, and
// optionally the kernel as QEMU patches it for a direct boot, so
// osslsigncode can compute its Authenticode digest:
//
//	go run ./measure/testdata/tdx/gendata DIR [KERNEL INITRD_SIZE MEMORY_MIB CMDLINE]
//	python3 td_shim_tee_info_hash.py --image DIR/synth-a.fd
//
// See testdata/provenance/tdx.md for the recorded results.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf/ovmftest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "gendata:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 1 && len(args) != 5 {
		return fmt.Errorf("usage: gendata DIR [KERNEL INITRD_SIZE MEMORY_MIB CMDLINE]")
	}
	for _, c := range ovmftest.TDXSynthCases() {
		img, _, err := ovmftest.TDXFirmware(c.Options)
		if err != nil {
			return err
		}
		if err := write(filepath.Join(args[0], c.Name+".fd"), img); err != nil {
			return err
		}
	}
	if len(args) == 1 {
		return nil
	}
	k, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	size, err := strconv.ParseInt(args[2], 0, 64)
	if err != nil {
		return err
	}
	mem, err := strconv.Atoi(args[3])
	if err != nil {
		return err
	}
	below, err := measure.QEMUBelow4G("q35", mem)
	if err != nil {
		return err
	}
	p, err := measure.QEMUPatchKernel(args[1], k, measure.QEMULinuxLoad{Cmdline: args[4], Initrd: size > 0, InitrdSize: size, BelowFourG: below})
	if err != nil {
		return err
	}
	return write(filepath.Join(args[0], "vmlinuz.qemu-patched"), p)
}

func write(p string, b []byte) error {
	fmt.Println(p)
	return os.WriteFile(p, b, 0o644)
}
