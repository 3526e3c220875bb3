package qemu

import (
	"bytes"
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
