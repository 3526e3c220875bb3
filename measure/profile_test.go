package measure

import (
	"strings"
	"testing"
)

func TestParseProfile(t *testing.T) {
	good := readFixture(t, fixtureProfile)
	p, err := ParseProfile(fixtureProfile, good)
	if err != nil {
		t.Fatal(err)
	}
	if p.Machine != "q35" || p.MemoryMiB != 1024 || p.VCPUs != 1 || len(p.Log().Events) != 24 {
		t.Errorf("profile %s/%d/%d, %d events", p.Machine, p.MemoryMiB, p.VCPUs, len(p.Log().Events))
	}
	again, err := p.Marshal()
	if err != nil || string(again) != string(good) {
		t.Errorf("Marshal does not reproduce the fixture bytes (err %v)", err)
	}
	s := string(good)
	for _, tc := range []struct{ name, text, want string }{
		{"schema", strings.Replace(s, ProfileSchema, "x/v9", 1), `schema "x/v9"`},
		{"unknown field", strings.Replace(s, `"machine"`, `"bogus": 1, "machine"`, 1), "unknown field"},
		{"no memory", strings.Replace(s, `"memory_mib": 1024`, `"memory_mib": 0`, 1), "memory_mib"},
		{"pcr mismatch", strings.Replace(s, `"7": "65caf8dd`, `"7": "05caf8dd`, 1), "does not replay to the recorded PCRs: PCR7 (sha256): replay of events 4, 5, 6, 7, 8, 9"},
		{"bad log", strings.Replace(s, `"event_log": "AAAA`, `"event_log": "AQAA`, 1), "event 0: PCRIndex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.text == s {
				t.Fatal("test edit did not apply")
			}
			_, err := ParseProfile("p.json", []byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
