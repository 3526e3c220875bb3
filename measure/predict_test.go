package measure

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mkcvm/mkcvm/internal/vmtest"
)

var (
	ovmfMu   sync.Mutex
	ovmfFW   *OVMFFirmware
	ovmfVars []byte
)

// debianOVMF analyzes the installed Debian OVMF 4M CODE once per test
// binary and returns it with the VARS template.
func debianOVMF(t testing.TB) (*OVMFFirmware, []byte) {
	t.Helper()
	ovmfMu.Lock()
	defer ovmfMu.Unlock()
	if ovmfFW == nil {
		code, err := os.ReadFile(vmtest.OVMFCode)
		if err != nil {
			if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
				t.Fatal(err)
			}
			t.Skip(err)
		}
		if ovmfVars, err = os.ReadFile(vmtest.OVMFVars); err != nil {
			t.Fatal(err)
		}
		if ovmfFW, err = AnalyzeOVMF(vmtest.OVMFCode, code); err != nil {
			t.Fatal(err)
		}
	}
	return ovmfFW, ovmfVars
}

// fixtureProfileFor loads the captured profile; it skips when the installed
// OVMF is not the build the fixtures were captured with.
func fixtureProfileFor(t testing.TB, fw *OVMFFirmware) *Profile {
	t.Helper()
	p, err := ParseProfile(fixtureProfile, readFixture(t, fixtureProfile))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(fw.CodeSHA256[:]); got != p.OVMFCodeSHA256 {
		t.Skipf("installed OVMF CODE %s is not the build of the fixtures (%s); the boot tests cover it", got, p.OVMFCodeSHA256)
	}
	return p
}

// TestAnalyzeOVMF checks the decompressed DXE volume against the digest
// OVMF itself logged (fixture event 3).
func TestAnalyzeOVMF(t *testing.T) {
	fw, _ := debianOVMF(t)
	fixtureProfileFor(t, fw)
	l, err := ParseEventLog(fixtureLog, readFixture(t, fixtureLog))
	if err != nil {
		t.Fatal(err)
	}
	dxe := l.Events[2]
	for _, a := range l.Algs() {
		if !bytes.Equal(fw.DXEFV[a], dxe.Digest(a)) {
			t.Errorf("%s DXEFV %x, OVMF logged %x", a, fw.DXEFV[a], dxe.Digest(a))
		}
	}
	if fw.DXEFVSize != 0xc00000 || fw.PEIFVSize != 0xe0000 || !fw.HasUiApp {
		t.Errorf("volumes: PEIFV %#x DXEFV %#x UiApp %v", fw.PEIFVSize, fw.DXEFVSize, fw.HasUiApp)
	}
}

func TestParseVarStoreDebianTemplate(t *testing.T) {
	_, vars := debianOVMF(t)
	vs, err := ParseVarStore("OVMF_VARS_4M.fd", vars)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 0 {
		t.Errorf("Debian's plain VARS template has %d variables, want none", len(vs))
	}
	ms, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
	if err != nil {
		t.Skip(err)
	}
	vs, err = ParseVarStore("OVMF_VARS_4M.ms.fd", ms)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PK", "KEK", "db", "dbx"} {
		vendor := EFIGlobalVariable
		if name == "db" || name == "dbx" {
			vendor = EFIImageSecurityDatabase
		}
		if d, ok := lookupVar(vs, vendor, name); !ok || len(d) == 0 {
			t.Errorf("Microsoft-keys template: %s missing", name)
		}
	}
}

// predictFixture predicts the fixture boot: Debian kernel, the fixture's
// cmdline, and an initrd of the fixture's size whose bytes are NOT the
// booted ones (the fixture initrd is not kept), so exactly the initrd event
// and PCRs 9-10 must differ.
func predictFixture(t testing.TB) (*Prediction, *EventLog) {
	fw, vars := debianOVMF(t)
	prof := fixtureProfileFor(t, fw)
	p, err := PredictDirectBoot(&DirectBoot{Firmware: fw, Vars: vars, Kernel: debianKernel(t),
		Initrd: make([]byte, 2673152), Cmdline: "console=ttyS0 panic=-1", Machine: "q35", MemoryMiB: 1024, VCPUs: 1, Profile: prof})
	if err != nil {
		t.Fatal(err)
	}
	l, err := ParseEventLog(fixtureLog, readFixture(t, fixtureLog))
	if err != nil {
		t.Fatal(err)
	}
	return p, l
}

func TestPredictAgainstRealLog(t *testing.T) {
	p, real := predictFixture(t)
	x := Explain(p, real, fixturePCRValues(t))
	var differ []int
	for _, v := range x.Events {
		switch v.Verdict {
		case VerdictMatch:
		case VerdictDiffer:
			differ = append(differ, v.Index)
			if !strings.Contains(v.Hint, "initrd bytes") {
				t.Errorf("event %d hint %q does not name the initrd", v.Index, v.Hint)
			}
		default:
			t.Errorf("event %d (%s): %s %s", v.Index, v.Actual.Type, v.Verdict, v.Hint)
		}
	}
	if len(differ) != 1 || differ[0] != 22 {
		t.Errorf("differing events %v, want only 22 (the initrd)", differ)
	}
	for _, pv := range x.PCRs {
		wantDiffer := pv.PCR == 9 || pv.PCR == 10
		if (pv.Verdict == VerdictDiffer) != wantDiffer {
			t.Errorf("PCR%d %s: %s (%s)", pv.PCR, pv.Alg, pv.Verdict, pv.Reason)
		}
	}
	if x.AllMatch() {
		t.Error("AllMatch with a different initrd")
	}
}

func TestExplainMissingKernelEvent(t *testing.T) {
	p, real := predictFixture(t)
	// Secure Boot with an untrusted kernel: OVMF loads it without the
	// EV_EFI_BOOT_SERVICES_APPLICATION event (fixture event 10).
	real.Events = append(real.Events[:9:9], real.Events[10:]...)
	x := Explain(p, real, nil)
	found := false
	for _, v := range x.Events {
		if v.Verdict == VerdictMissing && v.Predicted.Type == EvEFIBootServicesApp {
			found = strings.Contains(v.Hint, "kernel image was not measured") && strings.Contains(v.Hint, "Secure Boot")
		}
	}
	if !found || x.AllMatch() {
		t.Errorf("missing kernel event not flagged:\n%s", x.Text(AlgSHA256))
	}
}

func TestExplainOptionROM(t *testing.T) {
	p, real := predictFixture(t)
	rom := NewEvent(2, EvEFIBootServicesDriver, KernelLoadEvent(0x1000, 0x2000), []byte("rom"), real.Algs())
	real.Events = append(real.Events[:3:3], append([]Event{rom}, real.Events[3:]...)...)
	x := Explain(p, real, nil)
	for _, v := range x.Events {
		if v.Verdict == VerdictUnexpected && strings.Contains(v.Hint, "option ROM") && strings.Contains(v.Hint, "-net none") {
			return
		}
	}
	t.Errorf("option ROM event not explained:\n%s", x.Text(AlgSHA256))
}

func TestPredictWithoutProfile(t *testing.T) {
	fw, vars := debianOVMF(t)
	p, err := PredictDirectBoot(&DirectBoot{Firmware: fw, Vars: vars, Kernel: debianKernel(t), Initrd: []byte("x"),
		Cmdline: "c", Machine: "q35", MemoryMiB: 1024, VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.NotPinnedPCRs(); len(got) != 2 || got[0] != 0 || got[1] != 10 {
		t.Errorf("not pinned %v, want [0 10]", got)
	}
	if _, err := p.Log(); err == nil || !strings.Contains(err.Error(), "profile") {
		t.Errorf("Log() without profile: %v", err)
	}
}

func TestPredictProfileMismatch(t *testing.T) {
	fw, vars := debianOVMF(t)
	prof := fixtureProfileFor(t, fw)
	_, err := PredictDirectBoot(&DirectBoot{Firmware: fw, Vars: vars, Kernel: debianKernel(t), Machine: "q35", MemoryMiB: 2048, VCPUs: 2, Profile: prof})
	if err == nil || !strings.Contains(err.Error(), "memory 2048 MiB, profile captured with 1024 MiB") || !strings.Contains(err.Error(), "2 vCPUs") {
		t.Errorf("error %v, want memory and vCPU mismatches", err)
	}
}

// TestTpm2EventlogAgrees encodes a predicted log and replays it with
// tpm2_eventlog (tpm2-tools), an independent parser.
func TestTpm2EventlogAgrees(t *testing.T) {
	if _, err := exec.LookPath("tpm2_eventlog"); err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	p, _ := predictFixture(t)
	l, err := p.Log()
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "predicted.bin")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tpm2_eventlog", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_eventlog: %v\n%s", err, out)
	}
	got := parseTpm2EventlogPCRs(t, string(out))
	checked := 0
	for _, a := range []HashAlg{AlgSHA1, AlgSHA256, AlgSHA384} {
		mine, err := l.Replay(a)
		if err != nil {
			t.Fatal(err)
		}
		for pcr, v := range mine {
			if g, ok := got[a.String()][pcr]; !ok || g != hex.EncodeToString(v) {
				t.Errorf("%s PCR%d: tpm2_eventlog %q, ours %x", a, pcr, g, v)
			}
			checked++
		}
	}
	if n := strings.Count(string(out), "EventNum:"); n != len(l.Events)+1 || checked < 20 {
		t.Errorf("tpm2_eventlog saw %d events (want %d), %d PCRs compared", n, len(l.Events)+1, checked)
	}
}

// parseTpm2EventlogPCRs reads the "pcrs:" section of tpm2_eventlog's YAML.
func parseTpm2EventlogPCRs(t *testing.T, out string) map[string]map[uint32]string {
	t.Helper()
	_, pcrs, ok := strings.Cut(out, "\npcrs:\n")
	if !ok {
		t.Fatalf("no pcrs section in tpm2_eventlog output:\n%s", out)
	}
	res := map[string]map[uint32]string{}
	bank := ""
	line := regexp.MustCompile(`^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)`)
	for l := range strings.Lines(pcrs) {
		if m := line.FindStringSubmatch(l); m != nil && bank != "" {
			var n uint32
			for _, c := range m[1] {
				n = n*10 + uint32(c-'0')
			}
			res[bank][n] = strings.ToLower(m[2])
		} else if s := strings.TrimSpace(l); strings.HasSuffix(s, ":") {
			bank = strings.TrimSuffix(s, ":")
			res[bank] = map[uint32]string{}
		}
	}
	return res
}

// BenchmarkPredictReplay predicts and replays all PCRs of the default
// recipe's shape (Debian kernel, a 16 MiB initrd, sha256 + sha384 banks),
// with the firmware analyzed once outside the loop as the builder does.
// BenchmarkPredictHashLimit is the physical floor: one pass of each bank's
// hash over the kernel and the initrd.
func BenchmarkPredictReplay(b *testing.B) {
	fw, vars := debianOVMF(b)
	in := &DirectBoot{Firmware: fw, Vars: vars, Kernel: debianKernel(b), Initrd: benchInitrd(),
		Cmdline: "console=ttyS0", Machine: "q35", MemoryMiB: 1024, VCPUs: 1, Algs: []HashAlg{AlgSHA256, AlgSHA384}}
	b.SetBytes(int64(len(in.Kernel) + len(in.Initrd)))
	for b.Loop() {
		p, err := PredictDirectBoot(in)
		if err != nil {
			b.Fatal(err)
		}
		if len(p.PCRs[AlgSHA384]) != 9 {
			b.Fatalf("%d PCRs", len(p.PCRs[AlgSHA384]))
		}
	}
}

func BenchmarkPredictHashLimit(b *testing.B) {
	k, ird := debianKernel(b), benchInitrd()
	b.SetBytes(int64(len(k) + len(ird)))
	for b.Loop() {
		for _, a := range []HashAlg{AlgSHA256, AlgSHA384} {
			a.Sum(k)
			a.Sum(ird)
		}
	}
}

func benchInitrd() []byte {
	b := make([]byte, 16<<20)
	for i := range b {
		b[i] = byte(i * 131 >> 7)
	}
	return b
}

// TestExplainSecureBootBoot explains a real boot with Debian's Secure Boot
// OVMF (OVMF_CODE_4M.ms.fd, Microsoft keys in OVMF_VARS_4M.ms.fd) and the
// Debian kernel, which db does not trust directly: OVMF started the kernel
// without measuring it (testdata/provenance/tpm.md, boot "sb").
func TestExplainSecureBootBoot(t *testing.T) {
	code, err := os.ReadFile("/usr/share/OVMF/OVMF_CODE_4M.ms.fd")
	if err != nil {
		t.Skip(err)
	}
	vars, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
	if err != nil {
		t.Skip(err)
	}
	// The fixture's PCR7 events carry this build's enrolled keys and dbx.
	if got := hex.EncodeToString(AlgSHA256.Sum(vars)); got != "e6044c5d1fd81998a5967d907ec425e48da534832c7d9b0b4c7a702b62019c50" {
		t.Skipf("installed OVMF_VARS_4M.ms.fd %s is not the fixture's build", got)
	}
	fw, err := AnalyzeOVMF("OVMF_CODE_4M.ms.fd", code)
	if err != nil {
		t.Fatal(err)
	}
	const logName = "testdata/tpm/q35-1024m-1cpu-secureboot-ms.eventlog"
	real, err := ParseEventLog(logName, readFixture(t, logName))
	if err != nil {
		t.Fatal(err)
	}
	p, err := PredictDirectBoot(&DirectBoot{Firmware: fw, Vars: vars, Kernel: debianKernel(t), Initrd: make([]byte, 2673152),
		Cmdline: "console=ttyS0 panic=-1", Machine: "q35", MemoryMiB: 1024, VCPUs: 1, Algs: real.Algs()})
	if err != nil {
		t.Fatal(err)
	}
	x := Explain(p, real, nil)
	var missingKernel, missingOpts bool
	for _, v := range x.Events {
		if v.Verdict == VerdictMissing && v.Predicted.Type == EvEFIBootServicesApp {
			missingKernel = strings.Contains(v.Hint, "Secure Boot")
		}
		if v.Verdict == VerdictMissing && v.Predicted.Type == EvEventTag && strings.Contains(v.Hint, "LoadOptions") {
			missingOpts = true
		}
		if v.Actual != nil && v.Actual.PCR == 7 && v.Verdict != VerdictMatch {
			t.Errorf("PCR7 event %d (%s) %s: the Secure Boot variables come from the VARS template", v.Index, DescribeEvent(v.Actual), v.Verdict)
		}
	}
	if !missingKernel || !missingOpts || x.AllMatch() {
		t.Errorf("missing kernel event flagged %v, missing LoadOptions flagged %v:\n%s", missingKernel, missingOpts, x.Text(AlgSHA256))
	}
}

func TestExplainUnpatchedKernel(t *testing.T) {
	p, real := predictFixture(t)
	k := debianKernel(t)
	for i := range real.Events {
		e := &real.Events[i]
		if e.Type == EvEFIBootServicesApp {
			for j, d := range e.Digests {
				v, err := PEImageDigest("k", k, d.Alg, PadNone)
				if err != nil {
					t.Fatal(err)
				}
				e.Digests[j].Value = v
			}
		}
	}
	x := Explain(p, real, nil)
	for _, v := range x.Events {
		if v.Verdict == VerdictDiffer && v.Predicted.Type == EvEFIBootServicesApp {
			if !strings.Contains(v.Hint, "unmodified kernel file") {
				t.Errorf("hint %q", v.Hint)
			}
			return
		}
	}
	t.Error("kernel event not reported as differing")
}

// TestExplainKernelMemoryDiffers explains the real b2 kernel digest (1536
// MiB, initrd of 2796544 bytes; testdata/provenance/tpm.md) against a
// prediction for 1024 MiB: explain must find the memory size.
func TestExplainKernelMemoryDiffers(t *testing.T) {
	p, real := predictFixture(t)
	p.in.Initrd = make([]byte, 2796544)
	p.in.Cmdline = "console=ttyS0 panic=-1 quiet foo=bar"
	for i := range real.Events {
		e := &real.Events[i]
		if e.Type == EvEFIBootServicesApp {
			for j := range e.Digests {
				if e.Digests[j].Alg == AlgSHA256 {
					e.Digests[j].Value = mustHex(t, "1f465f67039c93abda363a7a762f866b6e35c521f5feae76a1ba3439434dbe71")
				}
			}
		}
	}
	x := Explain(p, real, nil)
	for _, v := range x.Events {
		if v.Verdict == VerdictDiffer && v.Predicted.Type == EvEFIBootServicesApp {
			if !strings.Contains(v.Hint, "the VM ran with 1536 MiB, the shape says 1024 MiB") {
				t.Errorf("hint %q", v.Hint)
			}
			return
		}
	}
	t.Error("kernel event not reported as differing")
}
