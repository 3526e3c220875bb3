package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiskUKICmd(t *testing.T) {
	debs, _ := filepath.Glob(filepath.Join(os.Getenv("MKCVM_DEBDIR"), "systemd-boot-efi_*_amd64.deb"))
	if len(debs) == 0 {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal("no systemd-boot-efi .deb in MKCVM_DEBDIR")
		}
		t.Skip("no systemd-boot-efi .deb in MKCVM_DEBDIR")
	}
	dir := t.TempDir()
	const member = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	if b, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "./$3"`, "sh", debs[0], dir, member).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	stub := filepath.Join(dir, member)
	out := filepath.Join(dir, "uki.efi")
	key, cert := "../../builder/testdata/disk/db.key", "../../builder/testdata/disk/db.crt"
	// The stub is an x86-64 PE, so it can stand in for the kernel here.
	stdout, stderr, code := runCLI(t, "disk", "uki", "--stub", stub, "--kernel", stub, "--cmdline", "console=ttyS0",
		"--key", key, "--cert", cert, "-o", out)
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(stdout), "  "+out) {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if _, err := exec.LookPath("sbverify"); err == nil {
		if b, err := exec.Command("sbverify", "--cert", cert, out).CombinedOutput(); err != nil {
			t.Errorf("sbverify: %v\n%s", err, b)
		}
	}
	bad := filepath.Join(dir, "bad.efi")
	_, stderr, code = runCLI(t, "disk", "uki", "--stub", stub, "--kernel", key, "-o", bad)
	if code == 0 || !strings.Contains(stderr, "kernel is not an x86-64 EFI-stub PE image") {
		t.Errorf("non-PE kernel: exit %d, stderr %s", code, stderr)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Error("partial output written")
	}
	_, stderr, code = runCLI(t, "disk", "uki", "--stub", stub, "--kernel", stub, "--key", key, "--cert", "../../builder/testdata/disk/other.crt", "-o", bad)
	if code == 0 || !strings.Contains(stderr, "private key does not match certificate") {
		t.Errorf("mismatched key: exit %d, stderr %s", code, stderr)
	}
}
