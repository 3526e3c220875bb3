package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/internal/vmtest"
)

func tpmRunCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	code := 0
	if err := root.ExecuteContext(t.Context()); err != nil {
		fmt.Fprintln(&errb, "mkcvm:", err)
		code = exitCode(err)
	}
	return out.String(), errb.String(), code
}

// TestMeasureTPMAndExplain runs the CLI against the real boot fixture of
// measure/testdata/tpm (boot b1, testdata/provenance/tpm.md). The fixture's
// initrd is not kept, so a same-size stand-in is used: PCR0-8 must equal the
// booted values, PCR9 must not, and explain must blame the initrd.
func TestMeasureTPMAndExplain(t *testing.T) {
	if _, err := os.Stat(vmtest.OVMFCode); err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if code, _ := os.ReadFile(vmtest.OVMFCode); vmtest.SHA256Hex(code) != "b157d97b1f69729514feb7f201d2cbe4957f23ab77920e361fe9f822ba49ca4c" {
		t.Skip("installed OVMF is not the build the profile fixture was captured with")
	}
	kernel := vmtest.DebianKernel(t)
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd")
	if err := os.WriteFile(initrd, make([]byte, 2673152), 0o644); err != nil {
		t.Fatal(err)
	}
	const td = "../../measure/testdata/tpm/"
	args := []string{"--kernel", kernel, "--initrd", initrd, "--append", "console=ttyS0 panic=-1", "--profile", td + "q35-1024m-1cpu.profile.json"}
	out, errs, code := tpmRunCLI(t, append([]string{"measure", "tpm"}, args...)...)
	if code != 0 {
		t.Fatalf("measure tpm: exit %d\n%s", code, errs)
	}
	booted := map[string]string{}
	pcrText, _ := os.ReadFile(td + "q35-1024m-1cpu.pcrs")
	for l := range strings.Lines(string(pcrText)) {
		if f := strings.Fields(l); len(f) == 4 && f[1] == "sha256" {
			booted["PCR"+f[2]] = f[3]
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 11 {
		t.Fatalf("%d PCR lines, want PCR0-10:\n%s", len(lines), out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		want := f[0] != "PCR9" && f[0] != "PCR10"
		if (booted[f[0]] == f[1]) != want {
			t.Errorf("%s %s, booted %s (equal expected: %v)", f[0], f[1], booted[f[0]], want)
		}
	}

	out, _, code = tpmRunCLI(t, append([]string{"measure", "tpm", "--json", "--bank", "sha384"}, args...)...)
	var j struct {
		PCRs      map[string]map[string]string `json:"pcrs"`
		Basis     map[string]string            `json:"basis"`
		NotPinned []int                        `json:"not_pinned"`
		EventLog  []json.RawMessage            `json:"event_log"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil || code != 0 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	if len(j.PCRs["sha384"]) != 11 || len(j.PCRs["sha384"]["0"]) != 96 || j.Basis["0"] != "profile" || len(j.NotPinned) != 0 || len(j.EventLog) != 24 {
		t.Errorf("--json: %d sha384 PCRs, basis0 %q, not pinned %v, %d events", len(j.PCRs["sha384"]), j.Basis["0"], j.NotPinned, len(j.EventLog))
	}

	// Without a profile PCR0 and PCR10 are omitted and named on stderr.
	out, errs, _ = tpmRunCLI(t, "measure", "tpm", "--kernel", kernel, "--initrd", initrd)
	if strings.Contains(out, "PCR0 ") || !strings.Contains(errs, "PCR0 not pinned") || !strings.Contains(errs, "PCR10 not pinned") {
		t.Errorf("without profile: stdout %q stderr %q", out, errs)
	}

	out, _, code = tpmRunCLI(t, append([]string{"explain", td + "q35-1024m-1cpu.eventlog", "--pcrs", td + "q35-1024m-1cpu.pcrs"}, args...)...)
	if code != 1 || !strings.Contains(out, "depends on the initrd bytes") || !strings.Contains(out, "differ") {
		t.Errorf("explain: exit %d, want 1 and the initrd named:\n%s", code, out)
	}
	out, _, code = tpmRunCLI(t, append([]string{"explain", "--json", td + "q35-1024m-1cpu.eventlog"}, args...)...)
	var xj struct {
		AllMatch bool `json:"all_match"`
		Events   []struct {
			Index   int    `json:"index"`
			Verdict string `json:"verdict"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &xj); err != nil || code != 1 || xj.AllMatch || len(xj.Events) != 24 || xj.Events[21].Verdict != "differ" || xj.Events[21].Index != 22 {
		t.Errorf("explain --json: exit %d, %v, %+v", code, err, xj)
	}
	_, errs, code = tpmRunCLI(t, "explain", filepath.Join(dir, "initrd"), "--kernel", kernel)
	if code != 2 || !strings.Contains(errs, "event 0") {
		t.Errorf("explain on a non-log: exit %d, %s", code, errs)
	}
}
