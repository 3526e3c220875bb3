package measure

import (
	"bytes"
	"strings"
	"testing"
)

func TestParsePCRValues(t *testing.T) {
	// The layout of `tpm2_pcrread -T swtpm:port=… sha256:0,4+sha384:4`
	// (tpm2-tools 5.4), with values from boot b1.
	pcrread := "  sha256:\n" +
		"    0 : 0xEAA650AE9B6B9C6D0EF4FAB4DDA3AF9769F23C839CA3C98307A7A84831CBB472\n" +
		"    4 : 0x93C66A7CC993FDC429F2DA38EEA25EF8554D4C225A8549BA4BF4D3C2334ACD8A\n" +
		"  sha384:\n" +
		"    4 : 0x8520A154EB56CC952976B2C656180EAF294481E2899B4153F87C87071D24D534803BD468DA9C707CC9F88CF05829006F\n"
	for _, tc := range []struct {
		name, text string
		bank       HashAlg
		pcr        uint32
		prefix     string
	}{
		{"tpm2_pcrread", pcrread, AlgSHA384, 4, "8520a154"},
		{"tpm2_pcrread sha256", pcrread, AlgSHA256, 0, "eaa650ae"},
		{"mkcvm-init", "MKCVM-PCR sha256 4 93c66a7cc993fdc429f2da38eea25ef8554d4c225a8549ba4bf4d3c2334acd8a\r\n", AlgSHA256, 4, "93c66a7c"},
		{"measure tpm", "PCR4 93c66a7cc993fdc429f2da38eea25ef8554d4c225a8549ba4bf4d3c2334acd8a\n", AlgSHA256, 4, "93c66a7c"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := ParsePCRValues("in", tc.text, AlgSHA256)
			if err != nil {
				t.Fatal(err)
			}
			if got := v[tc.bank][tc.pcr]; !bytes.HasPrefix(got, mustHex(t, tc.prefix)) {
				t.Errorf("%s PCR%d = %x", tc.bank, tc.pcr, got)
			}
		})
	}
	for _, tc := range []struct{ name, text, want string }{
		{"empty", "hello\n", "no PCR values"},
		{"bad index", "PCR99 00\n", "in:1: PCR index \"99\""},
		{"bad hex", "PCR1 zz\n", "in:1: hex value"},
		{"wrong size", "PCR1 0011\n", "in:1: PCR1 sha256 value is 2 bytes, want 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePCRValues("in", tc.text, AlgSHA256)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := decodeHexString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
