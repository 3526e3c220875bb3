package boottest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/measure"
)

// Debian's Secure Boot OVMF build (SMM) and its VARS template with
// Microsoft's keys enrolled.
const (
	msCode = "/usr/share/OVMF/OVMF_CODE_4M.ms.fd"
	msVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// TestSecureBootKernelNotMeasured boots the Debian kernel (signed by
// Debian's CA, which db does not list) with Microsoft's keys enrolled: OVMF
// starts it without measuring it. The predictor still expects the kernel
// event, and explain must flag its absence, while the Secure Boot
// variables in PCR7 match the VARS template.
func TestSecureBootKernelNotMeasured(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU")
	}
	vmtest.Require(t)
	for _, f := range []string{msCode, msVars} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("Debian's Secure Boot OVMF is not installed: %v", err)
		}
	}
	kernel := vmtest.DebianKernel(t)
	initrd := filepath.Join(t.TempDir(), "initrd.cpio")
	vmtest.WriteInitOnly(t, initrd, vmtest.BuildInit(t))
	const cmdline = "console=ttyS0 panic=-1 quiet"
	d := bootWith(t, vmtest.Options{Code: msCode, Vars: msVars, Kernel: kernel, Initrd: initrd, Append: cmdline,
		Machine: "q35,smm=on", Extra: []string{"-global", "driver=cfi.pflash01,property=secure,value=on"}, TPM: true})
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p, err := builder.PredictTPM(builder.TPMRequest{Code: read(msCode), Vars: read(msVars), Kernel: read(kernel),
		Initrd: read(initrd), Cmdline: cmdline})
	if err != nil {
		t.Fatal(err)
	}
	real, err := measure.ParseEventLog("booted log", d.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	x := measure.Explain(p, real, quoted(d))
	flagged := false
	for _, v := range x.Events {
		if v.Verdict == measure.VerdictMissing && v.Predicted.Type == measure.EvEFIBootServicesApp {
			flagged = strings.Contains(v.Hint, "kernel image was not measured")
		}
		if v.Actual != nil && v.Actual.PCR == 7 && v.Verdict != measure.VerdictMatch {
			t.Errorf("PCR7 event %d %s: %s", v.Index, measure.DescribeEvent(v.Actual), v.Verdict)
		}
	}
	if !flagged || x.AllMatch() {
		t.Errorf("the unmeasured kernel is not flagged:\n%s", x.Text(measure.AlgSHA256))
	}
	for _, pv := range x.PCRs {
		if pv.PCR == 7 && pv.Verdict != measure.VerdictMatch {
			t.Errorf("%s PCR7: %s (%s)", pv.Alg, pv.Verdict, pv.Reason)
		}
	}
}
