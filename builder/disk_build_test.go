package builder

import (
	"context"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/manifesttest"
	"github.com/mkcvm/mkcvm/measure"
)

func TestDiskRecipeParses(t *testing.T) {
	b, err := os.ReadFile("testdata/disk/disk.toml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRecipe(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Disk == nil || r.Disk.SecureBoot == nil || r.Disk.SecureBoot.Owner != "4d4b4356-6d6b-6376-6d20-6f776e657221" || r.Shapes[0].Platform != DiskPlatform {
		t.Errorf("parsed disk %+v", r.Disk)
	}
}

func TestDiskRecipeErrors(t *testing.T) {
	b, err := os.ReadFile("testdata/disk/disk.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, old, new, want string }{
		{"unknown key", `volume_label = "MKCVM-ESP"`, `volume_lable = "X"`, "disk.volume_lable: unknown key"},
		{"missing stub input", `stub = "systemd-stub"`, `stub = "nope"`, `disk: stub: names no input: "nope"`},
		{"bad GUID", `disk_guid = "8c3e1d7a-1f0b-4a52-9d53-3b1b6f7c2a10"`, `disk_guid = "x"`, "disk: disk_guid: must be a GUID"},
		{"bad serial", `volume_serial = "1234abcd"`, `volume_serial = "12"`, "volume_serial: must be 8 hex digits"},
		{"missing key", `key = "sb-key"`, `key = ""`, "disk: secure_boot.key: required"},
		{"epoch before 1980", `epoch = 1751414400`, `epoch = 0`, "before 1980-01-01"},
		{"shape without disk", "[disk]\n", "[unused]\n", "need a [disk] section"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(b), tc.old, tc.new, 1)
			if tc.name == "shape without disk" {
				i := strings.Index(src, "[unused]")
				j := strings.Index(src, "[[shape]]")
				src = src[:i] + src[j:]
			}
			_, err := ParseRecipe([]byte(src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if err != nil && !errors.Is(err, ErrRecipe) && tc.name != "unknown key" {
				t.Errorf("err %v is not ErrRecipe", err)
			}
		})
	}
}

// TestDiskHookAndValues runs the build's disk hook and the tpm-disk value
// function on small inputs and validates the manifest entry.
func TestDiskHookAndValues(t *testing.T) {
	code, err := os.ReadFile("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
	if err != nil {
		t.Skip(err)
	}
	vars, _ := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
	stub := debStub(t)
	key, _ := os.ReadFile("testdata/disk/db.key")
	crt, _ := os.ReadFile("testdata/disk/db.crt")
	b, _ := os.ReadFile("testdata/disk/disk.toml")
	r, err := ParseRecipe(b)
	if err != nil {
		t.Fatal(err)
	}
	mi := &MeasureInputs{FirmwareCode: code, FirmwareVars: vars, Kernel: stub, Initrd: []byte("initrd"), Cmdline: r.Cmdline,
		Inputs: map[string][]byte{"systemd-stub": stub, "sb-key": key, "sb-cert": crt, "ovmf-vars": vars, "ovmf-code-secboot": code}}
	arts, err := diskArtifactHook(context.Background(), r, mi)
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 3 || arts[0].Name != DiskImageFile || mi.Disk == nil || len(arts[2].Data) != len(vars) {
		t.Fatalf("artifacts %d, disk %v", len(arts), mi.Disk != nil)
	}
	s, err := ComputeShape(mi, r.Shapes[0])
	if err != nil {
		t.Fatal(err)
	}
	if s.TPM == nil || s.TPM.Basis["11"] != measure.BasisPredicted || s.TPM.Basis["0"] != measure.BasisNotPinned || len(s.TPM.PCRs["sha256"]) != 11 {
		t.Errorf("TPM values %+v", s.TPM)
	}
	if s.Platform != "tpm" || !strings.Contains(strings.Join(s.Notes, " "), "disk boot") {
		t.Errorf("shape platform %q notes %q", s.Platform, s.Notes)
	}
	m := manifesttest.Sample()
	m.Shapes = append(m.Shapes, s)
	if err := manifest.Validate(m); err != nil {
		t.Errorf("manifest with the disk shape: %v", err)
	}
}

// debStub extracts the systemd stub from the systemd-boot-efi .deb in
// $MKCVM_DEBDIR with dpkg-deb.
func debStub(t *testing.T) []byte {
	t.Helper()
	debs, _ := filepath.Glob(filepath.Join(os.Getenv("MKCVM_DEBDIR"), "systemd-boot-efi_*_amd64.deb"))
	if len(debs) == 0 {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatal("no systemd-boot-efi .deb in MKCVM_DEBDIR (run `make debs`)")
		}
		t.Skip("no systemd-boot-efi .deb in MKCVM_DEBDIR")
	}
	dir := t.TempDir()
	const member = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	if b, err := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "./$3"`, "sh", debs[len(debs)-1], dir, member).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, b)
	}
	b, err := os.ReadFile(filepath.Join(dir, member))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiskRecipeBuildBoots is the end-to-end proof: Build the example disk
// recipe (Debian kernel, u-root initrd with mkcvm-init, Secure Boot), boot
// the disk.img it wrote with its OVMF_CODE.fd and OVMF_VARS.enrolled.fd, and
// compare every PCR the manifest pins with the booted guest's.
func TestDiskRecipeBuildBoots(t *testing.T) {
	vmtest.Require(t)
	dirs := debDirs(t)
	r, text, root, err := LoadRecipe("testdata/disk/disk.toml")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	out := filepath.Join(t.TempDir(), "bundle")
	res, err := Build(t.Context(), r, BuildOptions{Out: out, RecipeText: text, ModuleDir: repoDir(t), Cache: sharedCache(t),
		Fetcher: NewSourceFetcher(r, root, dirs), RecipeDir: "testdata/disk", DebDirs: dirs})
	if err != nil {
		t.Fatal(err)
	}
	if err := manifest.Validate(res.Manifest); err != nil {
		t.Fatal(err)
	}
	boot, err := vmtest.Boot(t.Context(), t, vmtest.Options{
		Code: filepath.Join(out, "OVMF_CODE.fd"), Vars: filepath.Join(out, DiskVarsFile), Disk: filepath.Join(out, DiskImageFile),
		TPM: true, Machine: "q35,smm=on", Timeout: 4 * time.Minute,
		Extra: []string{"-global", "driver=cfi.pflash01,property=secure,value=on"},
	})
	if err != nil {
		t.Fatalf("boot: %v\n%s", err, boot.Console)
	}
	tpm := res.Manifest.Shapes[0].TPM
	compared := 0
	for _, bank := range slices.Sorted(maps.Keys(tpm.PCRs)) {
		for _, idx := range slices.Sorted(maps.Keys(tpm.PCRs[bank])) {
			n, _ := strconv.Atoi(idx)
			compared++
			if got := hex.EncodeToString(boot.Dump.PCRs[bank][n]); got != tpm.PCRs[bank][idx] {
				t.Errorf("%s PCR%s: manifest %s, booted %s", bank, idx, tpm.PCRs[bank][idx], got)
			}
		}
	}
	if compared < 20 {
		t.Errorf("only %d PCR values compared", compared)
	}
}
