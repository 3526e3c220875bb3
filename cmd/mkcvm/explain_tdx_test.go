package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

// goEventlogCCEL reads a real CC event log shipped as test data of the
// github.com/google/go-eventlog module (in the module cache; see
// testdata/provenance/tdx.md).
func goEventlogCCEL(t *testing.T, name string) []byte {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-eventlog").Output()
	b, rerr := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "testdata", "eventlogs", "ccel", name))
	if err != nil || rerr != nil {
		if os.Getenv("MKCVM_DEBDIR") != "" {
			t.Fatalf("go-eventlog test data %s not found (go list -m: %v; %v)", name, err, rerr)
		}
		t.Skipf("go-eventlog test data %s not found: %v %v", name, err, rerr)
	}
	return b
}

// TestExplainTDX runs `mkcvm explain` on real TDX CC event logs against a
// manifest whose RTMR0..2 are the values of the TD quotes taken with those
// logs (go-eventlog ccel/cceventlog_test.go COS113TDX and GDCCCEL, converted
// to hex), so the reference RTMRs do not come from mkcvm's own replay. The
// manifest's event list is the log's own; tampering one event's digest must
// then exit 1 and name that event.
func TestExplainTDX(t *testing.T) {
	tests := []struct {
		file string
		rtmr [3]string
	}{
		{"cos-113-intel-tdx.bin", [3]string{
			"3fa2f61f395b7f5feefb4ec2df61297f109ad8abcd6410c1b7df60f21f37b19297fc35e544039c7e1edece752afd17f6",
			"f62dbc072bd5d3f3438b7b35c39a727f5aea2ffc2473f43723953f530daf62504f0a7944aa62c41a86e8a878c2b122c1",
			"4969684dc87381fc3b3134176c8d8806eaf0a901859f5f70cfae8d17714b46c10a8de219048c9fc09f11f381a6fbe7c1",
		}},
		{"gdc-tdx.bin", [3]string{
			"4655ef03c877b3d74a66203e46858fb990dba974a45ca65085bc464594336e04eb49ca100e6a1cebe7ae322f3288b08f",
			"bf86aac140c10507b73c23d2f3a676b6a3695a9aade36335733180b04b0eecd20d05abe2e3aa5e8b0bad73fae30f34f4",
			"b65f8202d0d3c9679fe0b1f3f341a5c8eea49ea493146416deed8ae363d7632544d429424e2a208234c76ed5c1ba09ce",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			raw := goEventlogCCEL(t, tc.file)
			l, err := measure.ParseCCEL(tc.file, raw)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			v := manifest.TDXValues{MRTD: strings.Repeat("00", 48), RTMRBasis: [4]string{"profile", "profile", "profile", "not-pinned"}}
			copy(v.RTMR[:3], tc.rtmr[:])
			target := -1 // the RTMR1 "Calling EFI Application from Boot Option" action
			for i, e := range l.Events {
				if e.Type == measure.EvNoAction {
					continue
				}
				if r := measure.RTMRIndex(e.PCR); r < 0 || r > 2 {
					continue
				}
				v.EventLog = append(v.EventLog, manifest.Event{Index: i + 1, PCR: int(e.PCR), Type: e.Type.String(),
					Digests: map[string]string{"sha384": hex.EncodeToString(e.Digest(measure.AlgSHA384))}})
				if target < 0 && e.Type == measure.EvEFIAction && bytes.Contains(e.Data, []byte("Calling EFI Application from Boot Option")) {
					target = i
				}
			}
			if target < 0 {
				t.Fatal("log has no boot-option action event")
			}
			m := &manifest.Manifest{Schema: manifest.SchemaVersion, Recipe: manifest.Recipe{Name: "t", SHA256: strings.Repeat("00", 32)},
				Shapes: []manifest.Shape{{Name: "tpm-first", Platform: "tpm", TPM: &manifest.TPMValues{PCRs: map[string]map[string]string{}, Basis: map[string]string{}}},
					{Name: "tdx-real", Platform: "tdx", TDX: &v}}}
			enc, err := manifest.Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			man := filepath.Join(dir, "manifest.json")
			logPath := filepath.Join(dir, "ccel.bin")
			if err := os.WriteFile(man, enc, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(logPath, raw, 0o644); err != nil {
				t.Fatal(err)
			}

			// Detected as a CC event log; the first TDX shape is the default.
			out, errs, code := runCLI(t, "explain", logPath, "--manifest", man)
			if code != 0 || !strings.Contains(out, "all events and RTMRs match") {
				t.Fatalf("untampered log: exit %d\n%s\n%s", code, out, errs)
			}
			for i := range 3 {
				if !strings.Contains(out, fmt.Sprintf("RTMR%d replay %s  matches profile value", i, tc.rtmr[i])) {
					t.Errorf("RTMR%d not reported matching the quote value:\n%s", i, out)
				}
			}
			if out2, _, code := runCLI(t, "explain", logPath, "--tdx", "--manifest", man, "--shape", "tdx-real"); code != 0 || out2 != out {
				t.Errorf("--tdx --shape tdx-real: exit %d, output differs", code)
			}

			// Tamper with the digest of the boot-option action.
			d := l.Events[target].Digest(measure.AlgSHA384)
			at := bytes.Index(raw, d)
			if at < 0 {
				t.Fatal("event digest not found in the log bytes")
			}
			bad := bytes.Clone(raw)
			bad[at] ^= 0xff
			if err := os.WriteFile(logPath, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			out, errs, code = runCLI(t, "explain", logPath, "--manifest", man)
			if code != 1 || !strings.Contains(errs, "differs from the manifest") {
				t.Fatalf("tampered log: exit %d, stderr %q", code, errs)
			}
			var line string
			for _, s := range strings.Split(out, "\n") {
				if strings.HasPrefix(s, fmt.Sprintf("%3d RTMR1 ", target+1)) {
					line = s
				}
			}
			if !strings.Contains(line, "EV_EFI_ACTION") || !strings.Contains(line, "Calling EFI Application from Boot Option") ||
				!strings.Contains(line, "[differs, predicted "+hex.EncodeToString(d)+"]") {
				t.Errorf("event %d not named as differing: %q\n%s", target+1, line, out)
			}
			if !strings.Contains(out, "RTMR1 replay") || !strings.Contains(out, "DIFFERS from profile value "+tc.rtmr[1]) {
				t.Errorf("RTMR1 not reported differing:\n%s", out)
			}

			// Without a manifest the events are described; no TDX shape is
			// an error; TPM-only flags are refused.
			if out, _, code := runCLI(t, "explain", logPath); code != 0 || !strings.Contains(out, "Spec ID event") {
				t.Errorf("no manifest: exit %d\n%s", code, out)
			}
			if _, errs, code := runCLI(t, "explain", logPath, "--manifest", man, "--shape", "nope"); code == 0 || !strings.Contains(errs, `no TDX shape named "nope"`) {
				t.Errorf("unknown shape: exit %d %q", code, errs)
			}
			if _, errs, code := runCLI(t, "explain", logPath, "--pcrs", man); code == 0 || !strings.Contains(errs, "--pcrs") {
				t.Errorf("--pcrs with a CCEL: exit %d %q", code, errs)
			}
		})
	}
}
