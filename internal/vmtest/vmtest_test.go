package vmtest

import (
	"bytes"
	"path/filepath"
	"testing"
)

// TestBootDiagnosticInit boots the Debian kernel pinned by the Makefile
// with an initramfs holding only mkcvm-init, with Debian's OVMF and swtpm,
// and checks the init's records arrive intact: banner, command line, a TPM
// event log and a full SHA-256 PCR bank.
func TestBootDiagnosticInit(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	Require(t)
	kernel := DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	WriteInitOnly(t, initrd, BuildInit(t))
	const cmdline = "console=ttyS0 panic=-1 quiet mkcvm.test=1"
	res, err := Boot(t.Context(), t, Options{
		Code: OVMFCode, Vars: OVMFVars, Kernel: kernel, Initrd: initrd, Append: cmdline, TPM: true,
	})
	if err != nil {
		t.Fatalf("boot: %v\nconsole:\n%s", err, res.Console)
	}
	d := res.Dump
	// OVMF's QEMU kernel loader appends " initrd=initrd" to the load
	// options when QEMU passes an initrd; the kernel's EFI stub keeps it.
	if want := cmdline + " initrd=initrd"; !d.Done || d.Cmdline != want {
		t.Fatalf("dump: done=%v cmdline=%q, want done and %q", d.Done, d.Cmdline, want)
	}
	if len(d.EventLog) == 0 || len(d.PCRs["sha256"]) != 24 {
		t.Fatalf("dump: %d event log bytes, %d sha256 PCRs; want a log and 24 PCRs", len(d.EventLog), len(d.PCRs["sha256"]))
	}
	// PCR 0 in the sysfs bank must be non-zero after OVMF's measurements.
	if bytes.Equal(d.PCRs["sha256"][0], make([]byte, 32)) {
		t.Errorf("PCR0 is all zero after a measured boot")
	}
}
