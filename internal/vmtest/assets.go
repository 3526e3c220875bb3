package vmtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cavaliergopher/cpio"
)

// OVMF images from Debian's ovmf package (installed by `make test`).
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// DebianKernelDeb returns the path of the Debian linux-image .deb in
// $MKCVM_DEBDIR (downloaded by `make debs`). Without it the test is skipped,
// or fails under MKCVM_REQUIRE_VM=1.
func DebianKernelDeb(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("MKCVM_DEBDIR")
	debs, _ := filepath.Glob(filepath.Join(dir, "linux-image-6.1.0-*-amd64_*_amd64.deb"))
	if dir == "" || len(debs) == 0 {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatalf("no linux-image .deb in MKCVM_DEBDIR=%q (run `make debs`)", dir)
		}
		t.Skipf("no linux-image .deb in MKCVM_DEBDIR=%q (run `make debs`)", dir)
	}
	slices.Sort(debs)
	return debs[len(debs)-1]
}

// DebianKernel extracts /boot/vmlinuz-* from the Debian kernel package with
// dpkg-deb (an independent extractor) into a per-test directory and returns
// its path.
func DebianKernel(t testing.TB) string {
	t.Helper()
	deb := DebianKernelDeb(t)
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" --wildcards './boot/vmlinuz-*'`, "sh", deb, dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting kernel from %s: %v\n%s", deb, err, b)
	}
	ks, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(ks) != 1 {
		t.Fatalf("extracting kernel from %s: found %d vmlinuz files", deb, len(ks))
	}
	return ks[0]
}

// BuildInit compiles cmd/mkcvm-init statically and returns the binary.
func BuildInit(t testing.TB) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "init")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "github.com/mkcvm/mkcvm/cmd/mkcvm-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mkcvm-init: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WriteInitOnly writes an uncompressed newc initramfs holding only /init,
// using an independent cpio writer (github.com/cavaliergopher/cpio).
func WriteInitOnly(t testing.TB, path string, init []byte) {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.NewWriter(&buf)
	if err := w.WriteHeader(&cpio.Header{Name: "init", Mode: 0o755, Size: int64(len(init))}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(init); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// SHA256Hex returns the lowercase hex SHA-256 of b.
func SHA256Hex(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
