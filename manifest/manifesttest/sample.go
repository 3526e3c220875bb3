// Package manifesttest builds sample manifests and artifact trees for tests.
package manifesttest

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/mkcvm/mkcvm/manifest"
)

// Epoch is the build epoch of the sample manifest (2026-01-01T00:00:00Z).
const Epoch = 1767225600

// Files returns the sample artifact contents by file name. They are short
// synthetic byte strings, not bootable images.
func Files() map[string][]byte {
	return map[string][]byte{
		"OVMF.fd":    []byte("sample firmware image\x00\x01\x02"),
		"vmlinuz":    []byte("sample kernel image"),
		"initrd.img": []byte("sample initrd <&> bytes"),
	}
}

func hexSum256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func hexSum384(b []byte) string { s := sha512.Sum384(b); return hex.EncodeToString(s[:]) }

// Sample returns a manifest over Files with one SNP, TDX and TPM shape.
// The register values are labels hashed, not predictions of anything.
func Sample() *manifest.Manifest {
	f := Files()
	art := func(name, role string) manifest.Artifact {
		return manifest.Artifact{Name: name, Role: role, SHA256: hexSum256(f[name]), Size: int64(len(f[name]))}
	}
	recipe := "name = \"sample\"\nepoch = 1767225600\n"
	return &manifest.Manifest{
		Schema: manifest.SchemaVersion,
		Recipe: manifest.Recipe{Name: "sample", SHA256: hexSum256([]byte(recipe)), Text: recipe},
		Epoch:  Epoch,
		Toolchain: manifest.Toolchain{Go: "go1.26.8", Modules: []manifest.Module{
			{Path: "github.com/u-root/u-root", Version: "v0.16.0"},
		}, Env: []string{"CGO_ENABLED=0", "GOARCH=amd64"}},
		Inputs: []manifest.Input{
			{Name: "ovmf", Source: "deb:ovmf=2022.11-6+deb12u2", SHA256: hexSum256(f["OVMF.fd"]), Size: int64(len(f["OVMF.fd"]))},
		},
		Artifacts: []manifest.Artifact{art("OVMF.fd", "firmware"), art("vmlinuz", "kernel"), art("initrd.img", "initrd")},
		Cmdline:   "console=ttyS0 quiet",
		Shapes: []manifest.Shape{
			{Name: "snp-4", Platform: "snp", VCPUs: 4, VCPUType: "EPYC-v4", VMM: "qemu", Policy: "0x30000", GuestFeatures: "0x1",
				SNP: &manifest.SNPValues{Mode: "snp", LaunchDigest: hexSum384([]byte("snp-4")), KernelHashes: true, CoversKernel: true}},
			{Name: "tdx-2", Platform: "tdx", VCPUs: 2, MemoryMiB: 2048, PageOrder: "single",
				TDX: &manifest.TDXValues{MRTD: hexSum384([]byte("mrtd")),
					RTMR:      [4]string{hexSum384([]byte("r0")), hexSum384([]byte("r1")), hexSum384([]byte("r2")), ""},
					RTMRBasis: [4]string{"predicted", "predicted", "predicted", "not-pinned"}}},
			{Name: "vtpm", Platform: "tpm", VCPUs: 1, Machine: "q35",
				TPM: &manifest.TPMValues{
					PCRs:  map[string]map[string]string{"sha256": {"0": hexSum256([]byte("p0")), "4": hexSum256([]byte("p4")), "9": hexSum256([]byte("p9"))}},
					Basis: map[string]string{"0": "profile", "4": "predicted", "9": "predicted"},
					EventLog: []manifest.Event{
						{Index: 0, PCR: 4, Type: "EV_EFI_BOOT_SERVICES_APPLICATION", Digests: map[string]string{"sha256": hexSum256([]byte("k"))}, Description: "kernel"},
					}},
				Notes: []string{"PCR 0 comes from a captured platform profile"}},
		},
		Validity: manifest.NewValidity(Epoch, 0),
	}
}

// WriteDir writes Files into a new temporary directory and returns it.
func WriteDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range Files() {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
