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

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/measure"
)

// TestBuiltBundle builds the default recipe with `mkcvm build`, boots the
// bundle (its OVMF CODE/VARS, kernel, initrd and cmdline) on the recipe's
// tpm-q35 shape, and checks `mkcvm explain --manifest` reports all-match
// against the manifest's predicted event log and PCRs. With the captured
// profile fixture of that shape, PCR0 and PCR10 must match too.
func TestBuiltBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the recipe and boots QEMU")
	}
	vmtest.Require(t)
	vmtest.DebianKernelDeb(t) // the recipe's .debs are in $MKCVM_DEBDIR
	mkcvm := buildMkcvm(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	build := exec.Command(mkcvm, "build", "../../recipes/debian-bookworm.toml", "-o", out,
		"--debdir", os.Getenv("MKCVM_DEBDIR"), "--cache", filepath.Join(dir, "cache"))
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("mkcvm build: %v\n%s", err, b)
	}
	file := func(name string) string { return filepath.Join(out, name) }
	cmdline, err := os.ReadFile(file("cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	initrd := ""
	for _, n := range []string{"initrd.cpio.zst", "initrd.cpio.gz", "initrd.cpio"} {
		if _, err := os.Stat(file(n)); err == nil {
			initrd = file(n)
			break
		}
	}
	s := shape{1024, 1}
	d := bootWith(t, vmtest.Options{Code: file("OVMF_CODE.fd"), Vars: file("OVMF_VARS.fd"),
		Kernel: file("vmlinuz"), Initrd: initrd, Append: strings.TrimSpace(string(cmdline)), MemoryMiB: s.memMiB, VCPUs: s.vcpus, TPM: true})
	logPath, pcrPath := filepath.Join(dir, "real.log"), filepath.Join(dir, "real.pcrs")
	var pcrText strings.Builder
	for bank, vals := range d.PCRs {
		for i, v := range vals {
			fmt.Fprintf(&pcrText, "MKCVM-PCR %s %d %x\n", bank, i, v)
		}
	}
	if err := os.WriteFile(logPath, d.EventLog, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pcrPath, []byte(pcrText.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(mkcvm, "explain", logPath, "--manifest", file("manifest.json"), "--pcrs", pcrPath).CombinedOutput()
	if err != nil || !bytes.Contains(b, []byte("all events and PCRs match")) {
		t.Errorf("mkcvm explain --manifest: %v\n%s", err, b)
	}

	// The recipe's tpm-q35 shape names its captured profile, so the
	// manifest pins PCR0 (basis profile) and PCR10 (IMA boot_aggregate),
	// and both equal the booted values.
	man, err := os.ReadFile(file("manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Decode(man)
	if err != nil {
		t.Fatal(err)
	}
	var tpm *manifest.TPMValues
	for i := range m.Shapes {
		if m.Shapes[i].Name == "tpm-q35" {
			tpm = m.Shapes[i].TPM
		}
	}
	if tpm == nil {
		t.Fatal("manifest has no tpm-q35 TPM values")
	}
	for _, pcr := range []int{0, 10} {
		k := strconv.Itoa(pcr)
		if b := tpm.Basis[k]; b != "profile" && b != "predicted" {
			t.Errorf("manifest PCR%d basis %q, want profile or predicted", pcr, b)
		}
		for _, bank := range []string{"sha256", "sha384"} {
			if got, want := tpm.PCRs[bank][k], hex.EncodeToString(d.PCRs[bank][pcr]); got != want {
				t.Errorf("manifest %s PCR%d %q, booted %s", bank, pcr, got, want)
			}
		}
	}

	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	prof := read("../testdata/tpm/q35-1024m-1cpu.profile.json")
	p, err := builder.PredictTPM(builder.TPMRequest{Code: read(file("OVMF_CODE.fd")), Vars: read(file("OVMF_VARS.fd")),
		Kernel: read(file("vmlinuz")), Initrd: read(initrd), Cmdline: strings.TrimSpace(string(cmdline)),
		MemoryMiB: s.memMiB, VCPUs: s.vcpus, Profile: prof, ProfileName: "fixture"})
	if err != nil {
		t.Fatal(err)
	}
	checkRun(t, p, d)
	for _, a := range []measure.HashAlg{measure.AlgSHA256, measure.AlgSHA384} {
		if !bytes.Equal(p.PCRs[a][0], d.PCRs[a.String()][0]) {
			t.Errorf("%s PCR0 from the profile fixture differs from the boot", a)
		}
	}
}
