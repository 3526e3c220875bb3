package measure

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// goTPMToolsDir returns the go-tpm-tools v0.4.10 module directory (go.mod
// requires it), downloading it through the module proxy when needed.
func goTPMToolsDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/google/go-tpm-tools@v0.4.10").Output()
	var m struct{ Dir string }
	if err != nil || json.Unmarshal(out, &m) != nil || m.Dir == "" {
		t.Skipf("go-tpm-tools v0.4.10 not available: %v", err)
	}
	return m.Dir
}

// TestReplayGoTPMToolsLogs replays real event logs of other platforms (GCE
// vTPMs) kept in go-tpm-tools v0.4.10 internal/test/eventlogs against the
// SHA-256 PCRs go-tpm-tools pins for them (server/eventlog_test.go,
// Rhel8GCE and Ubuntu2404AmdSevSnp, read from those instances' TPMs).
func TestReplayGoTPMToolsLogs(t *testing.T) {
	dir := filepath.Join(goTPMToolsDir(t), "internal", "test", "eventlogs")
	for _, tc := range []struct {
		file string
		pcrs map[uint32]string
	}{
		{"rhel8-uefi.bin", map[uint32]string{
			0: "24af52a4f429b71a3184a6d64cddad17e54ea030e2aa6576bf3a5a3d8bd3328f",
			1: "454220afaa80c83c3839f6cccd8b3c88bf4f562316a9dda1121c578c9e005a53",
			2: "3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969",
			4: "758a3d35f1b0ff5b135dacd07db0c8132c0ac665d944090d4bf96e66447a245c",
			5: "53d0ee36163219201e686167bbb71ec505b3ba2917b9d9183ed84aad26cfeb89",
			7: "5fd54361d580eb7592adb8deb236ff35444ceeac7148f24b3de63c041f12b3da",
			8: "25c3874041ebd4e9a21b6ed71b624a7bfa99907a8dcea7f129a4c64cbaf5829a",
			9: "d43b2f61eb18b4791812ff5f20ab20e4ef621ba683370bedf5dbdf518b3a8078",
		}},
		{"ubuntu-2404-amd-sevsnp.bin", map[uint32]string{
			0:  "50597a27846e91d025eef597abbc89f72bff9af849094db97b0684d8bc4c515e",
			1:  "57344e1cc8c6619413df33013a7cd67915459f967395af41db21c1fa7ca9c307",
			4:  "abe8b3fa6aecb36c2fd93c6f6edde661c21b353d007410a2739d69bfa7e1b9be",
			5:  "0b0e1903aeb1bff649b82dba2cdcf5c4ffb75027e54f151ab00b3b989f16a300",
			7:  "33ad69850fb2c7f30b4f8b4bc10ed93fc954dc07fa726e84f50f3d192dc1c140",
			8:  "6932a3f71dc55ad3c1a6ac2196eeac26a1b7164b6bbfa106625d94088ec3ecc3",
			9:  "ce08798b283c7a0ddc5e9ad1d602304b945b741fc60c20e254eafa0f4782512b",
			14: "306f9d8b94f17d93dc6e7cf8f5c79d652eb4c6c4d13de2dddc24af416e13ecaf",
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil {
				t.Fatal(err)
			}
			l, err := ParseEventLog(tc.file, raw)
			if err != nil {
				t.Fatal(err)
			}
			want := map[uint32][]byte{}
			for pcr, h := range tc.pcrs {
				want[pcr] = mustHex(t, h)
			}
			if err := l.VerifyReplay(AlgSHA256, want); err != nil {
				t.Error(err)
			}
			for i := range l.Events {
				_ = DescribeEvent(&l.Events[i]) // must not panic on other platforms' data
			}
		})
	}
	// A SHA-1-only (pre crypto-agile) log is rejected with a clear error.
	raw, err := os.ReadFile(filepath.Join(dir, "debian-10.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEventLog("debian-10.bin", raw); err == nil {
		t.Error("SHA-1 format log accepted")
	}
}
