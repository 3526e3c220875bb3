// Command mkcvm-init is a small diagnostic init for mkcvm guests. It mounts
// the kernel file systems, prints a banner, dumps the kernel command line,
// the TPM firmware event log, the PCR banks and the TDX CC event log (CCEL)
// to the console in a line format that internal/vmtest parses, and powers
// the VM off. It uses only the standard library and builds with
// CGO_ENABLED=0.
//
// Console format (one record per line):
//
//	mkcvm-init: booted
//	MKCVM-CMDLINE <contents of /proc/cmdline>
//	MKCVM-EVENTLOG-BEGIN tpm
//	<base64, 76 characters per line>
//	MKCVM-EVENTLOG-END
//	MKCVM-PCR <bank> <index> <hex>
//	MKCVM-CCEL-BEGIN
//	<base64>
//	MKCVM-CCEL-END
//	MKCVM-DONE
package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	eventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"
	tpmClassDir  = "/sys/class/tpm/tpm0"
	ccelPath     = "/sys/firmware/acpi/tables/data/CCEL"
	pcrCount     = 24
)

type mountPoint struct{ source, target, fstype string }

var mounts = []mountPoint{
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
	{"devtmpfs", "/dev", "devtmpfs"},
	{"securityfs", "/sys/kernel/security", "securityfs"},
}

func main() {
	out := console()
	w := bufio.NewWriter(out)
	for _, m := range mounts {
		_ = os.MkdirAll(m.target, 0o755)
		if err := syscall.Mount(m.source, m.target, m.fstype, 0, ""); err != nil && err != syscall.EBUSY {
			fmt.Fprintf(w, "mkcvm-init: mount %s: %v\n", m.target, err)
		}
	}
	// Keep kernel messages off the console while we dump, so they cannot
	// interleave with the records.
	_ = os.WriteFile("/proc/sys/kernel/printk", []byte("1"), 0)
	fmt.Fprintln(w, "mkcvm-init: booted")
	dump(w)
	fmt.Fprintln(w, "MKCVM-DONE")
	w.Flush()
	syscall.Sync()
	if os.Getpid() == 1 {
		_ = syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
		select {}
	}
}

// console returns the console for output: /dev/console when we are init
// and it opens, stdout otherwise.
func console() io.Writer {
	if os.Getpid() == 1 {
		_ = os.MkdirAll("/dev", 0o755)
		_ = syscall.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
		if f, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
			return f
		}
	}
	return os.Stdout
}

func dump(w io.Writer) {
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		fmt.Fprintf(w, "MKCVM-CMDLINE %s\n", strings.TrimRight(string(b), "\n"))
	}
	waitFor(tpmClassDir, 5*time.Second)
	if b, err := os.ReadFile(eventLogPath); err == nil {
		writeBase64(w, "MKCVM-EVENTLOG-BEGIN tpm", "MKCVM-EVENTLOG-END", b)
	} else {
		fmt.Fprintf(w, "mkcvm-init: no TPM event log: %v\n", err)
	}
	dumpPCRs(w)
	if b, err := os.ReadFile(ccelPath); err == nil {
		writeBase64(w, "MKCVM-CCEL-BEGIN", "MKCVM-CCEL-END", b)
	}
}

func waitFor(path string, d time.Duration) {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
}

func dumpPCRs(w io.Writer) {
	banks, _ := filepath.Glob(filepath.Join(tpmClassDir, "pcr-*"))
	slices.Sort(banks)
	for _, dir := range banks {
		bank := strings.TrimPrefix(filepath.Base(dir), "pcr-")
		for i := range pcrCount {
			b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)))
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "MKCVM-PCR %s %d %s\n", bank, i, strings.ToLower(strings.TrimSpace(string(b))))
		}
	}
}

func writeBase64(w io.Writer, begin, end string, b []byte) {
	fmt.Fprintln(w, begin)
	s := base64.StdEncoding.EncodeToString(b)
	for len(s) > 76 {
		fmt.Fprintln(w, s[:76])
		s = s[76:]
	}
	if s != "" {
		fmt.Fprintln(w, s)
	}
	fmt.Fprintln(w, end)
}
