package boottest

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/measure"
)

// shape is a VM shape the tests boot.
type shape struct {
	memMiB, vcpus int
}

// writeInitrd writes a newc initramfs with /init and, when padLen > 0, a
// /pad file of padLen deterministic bytes (to change the initrd's size and
// bytes), using an independent cpio writer.
func writeInitrd(t *testing.T, path string, init []byte, padLen int) {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	files := []struct {
		name string
		data []byte
	}{{"init", init}}
	if padLen > 0 {
		pad := make([]byte, padLen)
		for i := range pad {
			pad[i] = byte(i*7 + i>>9)
		}
		files = append(files, struct {
			name string
			data []byte
		}{"pad", pad})
	}
	for _, f := range files {
		if err := w.WriteHeader(&cpio.Header{Name: f.name, Mode: 0o755, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// boot runs one measured boot and returns mkcvm-init's dump.
func boot(t *testing.T, kernel, initrd, cmdline string, s shape) *vmtest.Dump {
	t.Helper()
	return bootWith(t, vmtest.Options{Code: vmtest.OVMFCode, Vars: vmtest.OVMFVars,
		Kernel: kernel, Initrd: initrd, Append: cmdline, MemoryMiB: s.memMiB, VCPUs: s.vcpus, TPM: true})
}

// bootWith boots once more when kernel messages interleaved with
// mkcvm-init's records made the dump unreadable (a console race, not a
// measurement difference: the next boot's log is byte-identical).
func bootWith(t *testing.T, o vmtest.Options) *vmtest.Dump {
	t.Helper()
	s := shape{o.MemoryMiB, o.VCPUs}
	res, err := vmtest.Boot(t.Context(), t, o)
	if err != nil && strings.Contains(err.Error(), "console:") {
		t.Logf("boot %v: unreadable dump (%v); booting again", s, err)
		res, err = vmtest.Boot(t.Context(), t, o)
	}
	if err != nil {
		con := ""
		if res != nil {
			con = res.Console
		}
		t.Fatalf("boot %v: %v\nconsole:\n%s", s, err, con)
	}
	if !res.Dump.Done || len(res.Dump.EventLog) == 0 {
		t.Fatalf("boot %v: incomplete dump (done=%v, %d log bytes)", s, res.Dump.Done, len(res.Dump.EventLog))
	}
	return res.Dump
}

// profileFrom builds a platform profile from a capture boot, as `mkcvm
// capture` does, and checks it parses.
func profileFrom(t *testing.T, d *vmtest.Dump, s shape, code, vars, kernel, initrd []byte, cmdline string) []byte {
	t.Helper()
	sum := func(b []byte) string { return vmtest.SHA256Hex(b) }
	p := &measure.Profile{Schema: measure.ProfileSchema, QEMUVersion: "test", OVMFCodeSHA256: sum(code), OVMFVarsSHA256: sum(vars),
		Machine: "q35", MemoryMiB: s.memMiB, VCPUs: s.vcpus, Devices: []string{"-device tpm-crb", "-net none"},
		KernelSHA256: sum(kernel), InitrdSHA256: sum(initrd), InitrdSize: int64(len(initrd)), Cmdline: cmdline,
		EventLog: d.EventLog, PCRs: pcrStrings(d)}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := measure.ParseProfile("capture", b); err != nil {
		t.Fatalf("captured profile: %v", err)
	}
	return b
}

func pcrStrings(d *vmtest.Dump) map[string]map[string]string {
	out := map[string]map[string]string{}
	for bank, vals := range d.PCRs {
		out[bank] = map[string]string{}
		for i, v := range vals {
			out[bank][strconv.Itoa(i)] = hex.EncodeToString(v)
		}
	}
	return out
}

func quoted(d *vmtest.Dump) map[measure.HashAlg]map[uint32][]byte {
	out := map[measure.HashAlg]map[uint32][]byte{}
	for bank, vals := range d.PCRs {
		a, err := measure.ParseHashAlg(bank)
		if err != nil {
			continue
		}
		out[a] = map[uint32][]byte{}
		for i, v := range vals {
			out[a][uint32(i)] = v
		}
	}
	return out
}

// TestDirectBootPrediction boots two shapes. For each it first captures a
// platform profile (with `mkcvm capture` for the first, from vmtest's dump
// for the second) from a boot with a different initrd and cmdline, then
// boots the real inputs and checks that every predicted PCR (all banks)
// equals the booted value, the real event log equals the predicted one
// event for event, and `mkcvm explain` on the real log exits 0. Between
// the two boots cmdline, initrd and memory change; the PCRs the prediction
// says change are exactly the PCRs that changed.
func TestDirectBootPrediction(t *testing.T) {
	if testing.Short() {
		t.Skip("boots QEMU four times")
	}
	vmtest.Require(t)
	dir := t.TempDir()
	kernelPath := vmtest.DebianKernel(t)
	init := vmtest.BuildInit(t)
	initrdA, initrdB, initrdCap := filepath.Join(dir, "a.cpio"), filepath.Join(dir, "b.cpio"), filepath.Join(dir, "cap.cpio")
	writeInitrd(t, initrdA, init, 0)
	writeInitrd(t, initrdB, init, 300001)
	writeInitrd(t, initrdCap, init, 4096)
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	code, vars, kernel := read(vmtest.OVMFCode), read(vmtest.OVMFVars), read(kernelPath)
	mkcvm := buildMkcvm(t)

	type run struct {
		shape           shape
		initrd, cmdline string
		pred            *measure.Prediction
		dump            *vmtest.Dump
	}
	runs := []*run{
		{shape: shape{1024, 1}, initrd: initrdA, cmdline: "console=ttyS0 panic=-1 quiet"},
		{shape: shape{1536, 1}, initrd: initrdB, cmdline: "console=ttyS0 panic=-1 quiet mkcvm.boot=b"},
	}
	// quiet keeps kernel messages from interleaving with the dump records.
	const capCmdline = "console=ttyS0 panic=-1 quiet mkcvm.capture=1"
	for _, r := range runs {
		profPath := filepath.Join(dir, fmt.Sprintf("profile-%d.json", r.shape.memMiB))
		if r == runs[0] {
			// The first shape's profile comes from `mkcvm capture` itself.
			out, err := exec.Command(mkcvm, "capture", "--kernel", kernelPath, "--initrd", initrdCap, "--append", capCmdline,
				"--memory", strconv.Itoa(r.shape.memMiB), "--vcpus", strconv.Itoa(r.shape.vcpus), "-o", profPath).CombinedOutput()
			if err != nil {
				t.Fatalf("mkcvm capture: %v\n%s", err, out)
			}
		} else {
			capDump := boot(t, kernelPath, initrdCap, capCmdline, r.shape)
			b := profileFrom(t, capDump, r.shape, code, vars, kernel, read(initrdCap), capCmdline)
			if err := os.WriteFile(profPath, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		prof := read(profPath)
		pred, err := builder.PredictTPM(builder.TPMRequest{Code: code, Vars: vars, Kernel: kernel, Initrd: read(r.initrd),
			Cmdline: r.cmdline, Machine: "q35", MemoryMiB: r.shape.memMiB, VCPUs: r.shape.vcpus, ProfileName: "profile", Profile: prof})
		if err != nil {
			t.Fatal(err)
		}
		r.pred = pred
		r.dump = boot(t, kernelPath, r.initrd, r.cmdline, r.shape)
		checkRun(t, pred, r.dump)
		logPath, pcrPath := filepath.Join(dir, "real.log"), filepath.Join(dir, "real.pcrs")
		if err := os.WriteFile(logPath, r.dump.EventLog, 0o644); err != nil {
			t.Fatal(err)
		}
		var pcrText strings.Builder
		for bank, vals := range r.dump.PCRs {
			for i, v := range vals {
				fmt.Fprintf(&pcrText, "MKCVM-PCR %s %d %x\n", bank, i, v)
			}
		}
		if err := os.WriteFile(pcrPath, []byte(pcrText.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(mkcvm, "explain", logPath, "--ovmf-code", vmtest.OVMFCode, "--ovmf-vars", vmtest.OVMFVars,
			"--kernel", kernelPath, "--initrd", r.initrd, "--append", r.cmdline, "--memory", strconv.Itoa(r.shape.memMiB),
			"--vcpus", strconv.Itoa(r.shape.vcpus), "--profile", profPath, "--pcrs", pcrPath).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "all events and PCRs match") {
			t.Errorf("mkcvm explain on the real log of %v: %v\n%s", r.shape, err, out)
		}
	}

	// Changes between the two boots: predicted == real.
	a, b := runs[0], runs[1]
	changed := 0
	for _, alg := range a.pred.Algs {
		for pcr := range uint32(11) {
			predChanged := !bytes.Equal(a.pred.PCRs[alg][pcr], b.pred.PCRs[alg][pcr])
			realChanged := !bytes.Equal(a.dump.PCRs[alg.String()][int(pcr)], b.dump.PCRs[alg.String()][int(pcr)])
			if predChanged != realChanged {
				t.Errorf("%s PCR%d: predicted change %v, real change %v", alg, pcr, predChanged, realChanged)
			}
			if alg == measure.AlgSHA256 && realChanged {
				changed++
				t.Logf("PCR%d changed between the boots (predicted and real)", pcr)
			}
		}
	}
	// cmdline + initrd -> PCR4 (kernel header) and PCR9; memory -> PCR0 and PCR4; PCR10 follows.
	if changed < 4 {
		t.Errorf("only %d PCRs changed between boots with different cmdline, initrd and memory", changed)
	}
}

// checkRun compares one prediction with one boot.
func checkRun(t *testing.T, p *measure.Prediction, d *vmtest.Dump) {
	t.Helper()
	if nps := p.NotPinnedPCRs(); len(nps) != 0 {
		t.Errorf("PCRs %v not pinned despite a profile", nps)
	}
	for _, alg := range p.Algs {
		for pcr, want := range p.PCRs[alg] {
			got := d.PCRs[alg.String()][int(pcr)]
			if !bytes.Equal(got, want) {
				t.Errorf("%s PCR%d: predicted %x, booted %x", alg, pcr, want, got)
			}
		}
		if len(p.PCRs[alg]) != 11 {
			t.Errorf("%s: %d PCRs predicted, want 0-10", alg, len(p.PCRs[alg]))
		}
	}
	real, err := measure.ParseEventLog("booted log", d.EventLog)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := p.Log()
	if err != nil {
		t.Fatal(err)
	}
	if len(real.Events) != len(pl.Events) {
		t.Errorf("booted log has %d events, predicted %d", len(real.Events), len(pl.Events))
	}
	for i := range min(len(real.Events), len(pl.Events)) {
		if !measure.EventsEqual(&real.Events[i], &pl.Events[i]) {
			t.Errorf("event %d: booted PCR%d %s %s, predicted PCR%d %s %s", i+1,
				real.Events[i].PCR, real.Events[i].Type, measure.DescribeEvent(&real.Events[i]),
				pl.Events[i].PCR, pl.Events[i].Type, measure.DescribeEvent(&pl.Events[i]))
		}
	}
	x := measure.Explain(p, real, quoted(d))
	if !x.AllMatch() {
		t.Errorf("explain does not report all-match:\n%s", x.Text(measure.AlgSHA256))
	}
}

// buildMkcvm compiles the mkcvm CLI into the test's temp dir.
func buildMkcvm(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mkcvm")
	if out, err := exec.Command("go", "build", "-o", p, "github.com/mkcvm/mkcvm/cmd/mkcvm").CombinedOutput(); err != nil {
		t.Fatalf("go build mkcvm: %v\n%s", err, out)
	}
	return p
}
