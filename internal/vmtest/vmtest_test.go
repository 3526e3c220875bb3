package vmtest

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseDump(t *testing.T) {
	console := strings.Join([]string{
		"[    0.000000] Linux version 6.1.0",
		"mkcvm-init: booted",
		"MKCVM-CMDLINE console=ttyS0 panic=-1",
		"MKCVM-EVENTLOG-BEGIN tpm",
		"AAEC", "Aw==",
		"MKCVM-EVENTLOG-END",
		"MKCVM-PCR sha256 0 " + strings.Repeat("ab", 32),
		"MKCVM-PCR sha256 23 " + strings.Repeat("00", 32),
		"MKCVM-DONE",
	}, "\r\n") + "\r\n"
	got, err := ParseDump(console)
	if err != nil {
		t.Fatal(err)
	}
	want := &Dump{
		Banner:   true,
		Cmdline:  "console=ttyS0 panic=-1",
		EventLog: []byte{0, 1, 2, 3},
		PCRs: map[string]map[int][]byte{"sha256": {
			0:  bytes.Repeat([]byte{0xab}, 32),
			23: make([]byte, 32),
		}},
		Done: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseDump mismatch (-want +got):\n%s", diff)
	}
}

func TestParseDumpErrors(t *testing.T) {
	for _, tc := range []struct{ name, console, want string }{
		{"no banner", "MKCVM-DONE\n", "no mkcvm-init banner"},
		{"bad pcr", Banner + "\nMKCVM-PCR sha256 x 00\n", "PCR record"},
		{"bad hex", Banner + "\nMKCVM-PCR sha256 1 zz\n", "PCR record"},
		{"bad base64", Banner + "\nMKCVM-EVENTLOG-BEGIN tpm\n!!!\nMKCVM-EVENTLOG-END\n", "EVENTLOG-END"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseDump(tc.console)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseDump error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

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
