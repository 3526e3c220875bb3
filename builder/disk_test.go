package builder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/uki"
)

// lightFixture is a Secure Boot disk whose "kernel" is the stub itself (any
// x86-64 PE will do when nothing boots), so it needs only the
// systemd-boot-efi .deb.
func lightFixture(t *testing.T) *diskFixture {
	t.Helper()
	stub := systemdStub(t)
	return &diskFixture{
		spec: &builder.DiskSpec{
			Stub: "stub", DiskGUID: "8c3e1d7a-1f0b-4a52-9d53-3b1b6f7c2a10",
			ESPGUID: "0f9a7b5e-6c4d-4e2f-8a1b-2c3d4e5f6a7b", VolumeSerial: "1234abcd", Uname: "6.1.0-test",
			SecureBoot: &builder.SecureBootSpec{Key: "db.key", Cert: "db.crt", Owner: "4d4b4356-6d6b-6376-6d20-6f776e657221", VarsTemplate: "vars"},
		},
		in: builder.DiskInputs{
			Kernel: stub, Initrd: []byte("070701 not really a cpio"), Cmdline: "console=ttyS0", Epoch: 1700000000,
			Inputs: map[string][]byte{
				"stub": stub, "db.key": readFile(t, "testdata/disk/db.key"), "db.crt": readFile(t, "testdata/disk/db.crt"),
				"other.key": readFile(t, "testdata/disk/other.key"), "other.crt": readFile(t, "testdata/disk/other.crt"),
				"vars": readFile(t, vmtest.OVMFVars), "vars.ms": readFile(t, "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"),
			},
		},
	}
}

func TestBuildDiskReproducible(t *testing.T) {
	f := lightFixture(t)
	var sums [2][3][32]byte
	for i := range sums {
		t.Chdir(t.TempDir())               // a different working directory per build
		t.Setenv("SOURCE_DATE_EPOCH", "1") // must not leak into the image
		art, err := builder.BuildDisk(context.Background(), f.spec, f.in)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = [3][32]byte{sha256.Sum256(art.Image), sha256.Sum256(art.UKI), sha256.Sum256(art.Vars)}
		if got := os.Getenv("SOURCE_DATE_EPOCH"); got != "1" {
			t.Errorf("SOURCE_DATE_EPOCH = %q after the build, want it restored", got)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds differ: %x vs %x", sums[0], sums[1])
	}
}

// run runs a host tool and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	b, err := exec.Command(name, args...).CombinedOutput()
	return string(b), err
}

// TestBuildDiskTools checks the image with independent tools: sgdisk
// (gdisk) for the GPT, fsck.fat (dosfstools) and mtools for the ESP,
// sbverify (sbsigntool) and osslsigncode for the UKI's signature.
func TestBuildDiskTools(t *testing.T) {
	f := lightFixture(t)
	art, err := builder.BuildDisk(context.Background(), f.spec, f.in)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	disk, esp, efi := filepath.Join(dir, "disk.img"), filepath.Join(dir, "esp.img"), filepath.Join(dir, "uki.efi")
	g, err := measure.ParseGPT("disk", art.Image)
	if err != nil {
		t.Fatal(err)
	}
	p := g.Partitions[0]
	for path, b := range map[string][]byte{disk: art.Image, esp: art.Image[p.FirstLBA*512 : (p.LastLBA+1)*512], efi: art.UKI} {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(t, "sgdisk", "-v", disk); err != nil || !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	if out, err := run(t, "sgdisk", "-i", "1", disk); err != nil || !strings.Contains(out, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") ||
		!strings.Contains(out, strings.ToUpper(f.spec.ESPGUID)) {
		t.Errorf("sgdisk -i 1: %v\n%s", err, out)
	}
	if out, err := run(t, "fsck.fat", "-n", "-v", esp); err != nil || strings.Contains(out, "Fixing") || strings.Contains(out, "uninitialized") ||
		!strings.Contains(out, "2048 hidden sectors") {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
	copied := filepath.Join(dir, "copied.efi")
	if out, err := run(t, "mcopy", "-n", "-i", esp, "::EFI/BOOT/BOOTX64.EFI", copied); err != nil {
		t.Errorf("mcopy: %v\n%s", err, out)
	} else if b := readFile(t, copied); !bytes.Equal(b, art.UKI) {
		t.Errorf("BOOTX64.EFI read back by mtools differs from the UKI")
	}
	if out, err := run(t, "minfo", "-i", esp, "::"); err != nil || !strings.Contains(out, "serial number: 1234ABCD") {
		t.Errorf("minfo: %v\n%s", err, out)
	}
	if out, err := run(t, "sbverify", "--cert", "testdata/disk/db.crt", efi); err != nil {
		t.Errorf("sbverify with the db certificate: %v\n%s", err, out)
	}
	if out, err := run(t, "sbverify", "--cert", "testdata/disk/other.crt", efi); err == nil {
		t.Errorf("sbverify accepted another certificate:\n%s", out)
	}
	if out, err := run(t, "osslsigncode", "verify", "-in", efi, "-CAfile", "testdata/disk/db.crt"); err != nil ||
		!strings.Contains(out, "Signature verification: ok") || strings.Contains(out, "invalid PE checksum") {
		t.Errorf("osslsigncode verify: %v\n%s", err, out)
	}
	if out, err := run(t, "osslsigncode", "verify", "-in", efi, "-CAfile", "testdata/disk/other.crt"); err == nil {
		t.Errorf("osslsigncode accepted another CA:\n%s", out)
	}
}

func TestBuildDiskBadInput(t *testing.T) {
	f := lightFixture(t)
	armStub := bytes.Clone(f.in.Inputs["stub"])
	lfanew := binary.LittleEndian.Uint32(armStub[0x3c:])
	binary.LittleEndian.PutUint16(armStub[lfanew+4:], 0xaa64)
	for _, tc := range []struct {
		name     string
		edit     func(*builder.DiskSpec, *builder.DiskInputs)
		sentinel error
		msg      string
	}{
		{"kernel not a PE", func(s *builder.DiskSpec, in *builder.DiskInputs) { in.Kernel = []byte("\x7fELF") }, uki.ErrNotPE, "kernel is not an x86-64 EFI-stub PE image"},
		{"wrong-arch stub", func(s *builder.DiskSpec, in *builder.DiskInputs) { in.Inputs["stub"] = armStub }, uki.ErrWrongMachine, "stub: offset 0x84: COFF header.Machine"},
		{"key does not match certificate", func(s *builder.DiskSpec, in *builder.DiskInputs) { s.SecureBoot.Cert = "other.crt" }, builder.ErrKeyMismatch, `"db.key", certificate "other.crt"`},
		{"template already enrolled", func(s *builder.DiskSpec, in *builder.DiskInputs) { s.SecureBoot.VarsTemplate = "vars.ms" }, builder.ErrVarExists, "vars.ms: offset 0x"},
		{"missing input", func(s *builder.DiskSpec, in *builder.DiskInputs) { s.Stub = "nope" }, nil, `disk stub: input "nope" not in the recipe`},
		{"bad disk GUID", func(s *builder.DiskSpec, in *builder.DiskInputs) { s.DiskGUID = "xyz" }, nil, `disk disk_guid "xyz"`},
		{"bad serial", func(s *builder.DiskSpec, in *builder.DiskInputs) { s.VolumeSerial = "zz" }, nil, "volume_serial"},
		{"epoch before 1980", func(s *builder.DiskSpec, in *builder.DiskInputs) { in.Epoch = 0 }, nil, "before 1980"},
		{"vars not a firmware volume", func(s *builder.DiskSpec, in *builder.DiskInputs) { in.Inputs["vars"] = make([]byte, 4096) }, nil, "EFI_FIRMWARE_VOLUME_HEADER.Signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, sb := *f.spec, *f.spec.SecureBoot
			spec.SecureBoot = &sb
			in := f.in
			in.Inputs = map[string][]byte{}
			for k, v := range f.in.Inputs {
				in.Inputs[k] = v
			}
			tc.edit(&spec, &in)
			art, err := builder.BuildDisk(context.Background(), &spec, in)
			if err == nil || art != nil {
				t.Fatalf("BuildDisk succeeded")
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("err = %v, want %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("err = %q, want it to mention %q", err, tc.msg)
			}
		})
	}
}

// TestPCR11SystemdMeasure cross-checks the predicted PCR 11 with
// systemd-measure (systemd 252, Debian's systemd package): its
// "enter-initrd" phase is the stub's PCR 11 extended with
// sha256("enter-initrd").
func TestPCR11SystemdMeasure(t *testing.T) {
	const tool = "/usr/lib/systemd/systemd-measure"
	f := lightFixture(t)
	art, err := builder.BuildDisk(context.Background(), f.spec, f.in)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := builder.PredictDisk(builder.DiskRequest{Code: readFile(t, ovmfCodeSecboot), Art: art, Banks: []measure.HashAlg{measure.AlgSHA256}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := []string{"calculate", "--bank=sha256"}
	for _, s := range art.Sections {
		if s.Name == uki.SectionUname {
			continue // not measured by the 252 stub, unknown to systemd-measure 252
		}
		path := filepath.Join(dir, strings.TrimPrefix(s.Name, "."))
		if err := os.WriteFile(path, s.Data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--"+strings.TrimPrefix(s.Name, ".")+"="+path)
	}
	out, err := run(t, tool, args...)
	if err != nil {
		t.Fatalf("systemd-measure: %v\n%s", err, out)
	}
	phase := sha256.Sum256([]byte("enter-initrd"))
	want := measure.Extend(measure.AlgSHA256, pred.PCRs[measure.AlgSHA256][11], phase[:])
	if !strings.Contains(out, "# PCR[11] Phase <enter-initrd>\n11:sha256="+hex.EncodeToString(want)+"\n") {
		t.Errorf("predicted PCR 11 %x extended with \"enter-initrd\" = %x, not what systemd-measure computes:\n%s", pred.PCRs[measure.AlgSHA256][11], want, out)
	}
}
