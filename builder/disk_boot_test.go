package builder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/measure"
)

// OVMF CODE with Secure Boot and SMM (Debian ovmf: OVMF_CODE_4M.ms.fd links
// to it); it needs smm=on and a secure pflash.
const ovmfCodeSecboot = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"

// debMember extracts one file from a .deb in $MKCVM_DEBDIR with dpkg-deb
// (an independent extractor), skipping (or failing under
// MKCVM_REQUIRE_VM=1) when the .deb is absent.
func debMember(t testing.TB, glob, member string) []byte {
	t.Helper()
	dir := os.Getenv("MKCVM_DEBDIR")
	debs, _ := filepath.Glob(filepath.Join(dir, glob))
	if dir == "" || len(debs) == 0 {
		if os.Getenv("MKCVM_REQUIRE_VM") == "1" {
			t.Fatalf("no %s in MKCVM_DEBDIR=%q (run `make debs`)", glob, dir)
		}
		t.Skipf("no %s in MKCVM_DEBDIR=%q (run `make debs`)", glob, dir)
	}
	out := t.TempDir()
	cmd := exec.Command("sh", "-c", `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" "$3"`, "sh", debs[len(debs)-1], out, "./"+member)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("extracting %s from %s: %v\n%s", member, debs[len(debs)-1], err, b)
	}
	b, err := os.ReadFile(filepath.Join(out, member))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// systemdStub returns Debian's x86-64 systemd EFI stub.
func systemdStub(t testing.TB) []byte {
	return debMember(t, "systemd-boot-efi_*_amd64.deb", "usr/lib/systemd/boot/efi/linuxx64.efi.stub")
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// diskFixture builds the inputs of a Secure Boot disk around the Debian
// kernel and an initrd holding mkcvm-init.
type diskFixture struct {
	spec *builder.DiskSpec
	in   builder.DiskInputs
}

func newDiskFixture(t testing.TB) *diskFixture {
	t.Helper()
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.cpio")
	vmtest.WriteInitOnly(t, initrd, vmtest.BuildInit(t))
	return &diskFixture{
		spec: &builder.DiskSpec{
			Stub: "stub", DiskGUID: "8c3e1d7a-1f0b-4a52-9d53-3b1b6f7c2a10",
			ESPGUID: "0f9a7b5e-6c4d-4e2f-8a1b-2c3d4e5f6a7b", VolumeSerial: "1234abcd",
			SecureBoot: &builder.SecureBootSpec{
				Key: "db.key", Cert: "db.crt", Owner: "4d4b4356-6d6b-6376-6d20-6f776e657221",
				VarsTemplate: "vars",
			},
		},
		in: builder.DiskInputs{
			Kernel:  readFile(t, vmtest.DebianKernel(t)),
			Initrd:  readFile(t, initrd),
			Cmdline: "console=ttyS0 panic=-1",
			Epoch:   1700000000,
			Inputs: map[string][]byte{
				"stub":      systemdStub(t),
				"db.key":    readFile(t, "testdata/disk/db.key"),
				"db.crt":    readFile(t, "testdata/disk/db.crt"),
				"other.key": readFile(t, "testdata/disk/other.key"),
				"other.crt": readFile(t, "testdata/disk/other.crt"),
				"vars":      readFile(t, vmtest.OVMFVars),
			},
		},
	}
}

// bootDisk boots art's disk with Secure Boot CODE, its VARS and a TPM.
// With stopOn, the boot ends shortly after the console shows one of those
// strings.
func bootDisk(t *testing.T, art *builder.DiskArtifacts, timeout time.Duration, stopOn ...string) (*vmtest.Result, error) {
	dir := t.TempDir()
	disk, vars := filepath.Join(dir, "disk.img"), filepath.Join(dir, "vars.fd")
	if err := os.WriteFile(disk, art.Image, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, art.Vars, 0o644); err != nil {
		t.Fatal(err)
	}
	return vmtest.Boot(t.Context(), t, vmtest.Options{
		Code: ovmfCodeSecboot, Vars: vars, Disk: disk, TPM: true,
		Machine: "q35,smm=on", Timeout: timeout, StopOn: stopOn, StopGrace: 15 * time.Second,
		Extra: []string{"-global", "driver=cfi.pflash01,property=secure,value=on"},
	})
}

func TestDiskSecureBootBoots(t *testing.T) {
	vmtest.Require(t)
	f := newDiskFixture(t)
	art, err := builder.BuildDisk(context.Background(), f.spec, f.in)
	if err != nil {
		t.Fatal(err)
	}
	res, err := bootDisk(t, art, 4*time.Minute)
	if err != nil {
		t.Fatalf("boot: %v\n%s", err, res.Console)
	}
	if !res.Dump.Banner || !res.Dump.Done {
		t.Fatalf("no complete mkcvm-init dump:\n%s", res.Console)
	}
	// The kernel's own banner line (init's MKCVM-CMDLINE record can be
	// interleaved with kernel messages on the shared serial console).
	if !strings.Contains(res.Console, "Kernel command line: "+f.in.Cmdline) {
		t.Errorf("kernel did not boot with the UKI's command line %q", f.in.Cmdline)
	}
	if !strings.Contains(res.Console, "Secure boot enabled") {
		t.Errorf("kernel did not report \"Secure boot enabled\":\n%s", res.Console)
	}
	code := readFile(t, ovmfCodeSecboot)
	pred, err := builder.PredictDisk(builder.DiskRequest{Code: code, Art: art})
	if err != nil {
		t.Fatal(err)
	}
	checkPrediction(t, pred, res.Dump, 11)

	// A second disk (other command line and initrd) predicted with a
	// platform profile captured from the first boot: PCR 0 is pinned too.
	profile := profileFromDump(t, code, res.Dump)
	f.in.Cmdline = "console=ttyS0 panic=-1 quiet"
	f.in.Initrd = append(f.in.Initrd, make([]byte, 512)...) // cpio trailer padding
	art2, err := builder.BuildDisk(context.Background(), f.spec, f.in)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := bootDisk(t, art2, 4*time.Minute)
	if err != nil {
		t.Fatalf("second boot: %v\n%s", err, res2.Console)
	}
	pred2, err := builder.PredictDisk(builder.DiskRequest{Code: code, Art: art2, ProfileName: "first boot", Profile: profile})
	if err != nil {
		t.Fatal(err)
	}
	if pred2.Basis[0] != measure.BasisProfile {
		t.Errorf("PCR 0 basis %q with a profile", pred2.Basis[0])
	}
	checkPrediction(t, pred2, res2.Dump, 12)
	if bytes.Equal(pred.PCRs[measure.AlgSHA256][11], pred2.PCRs[measure.AlgSHA256][11]) {
		t.Error("PCR 11 did not change with the command line and initrd")
	}
}

// profileFromDump makes a platform profile (measure.Profile) from a boot's
// event log and PCRs 0-9, as `mkcvm capture` does.
func profileFromDump(t *testing.T, code []byte, d *vmtest.Dump) []byte {
	t.Helper()
	sum := sha256.Sum256(code)
	p := measure.Profile{Schema: measure.ProfileSchema, QEMUVersion: "vmtest", OVMFCodeSHA256: hex.EncodeToString(sum[:]),
		OVMFVarsSHA256: "", Machine: "q35", MemoryMiB: 1024, VCPUs: 1, EventLog: d.EventLog, PCRs: map[string]map[string]string{}}
	for bank, vals := range d.PCRs {
		p.PCRs[bank] = map[string]string{}
		for i := range 10 {
			p.PCRs[bank][strconv.Itoa(i)] = hex.EncodeToString(vals[i])
		}
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPrediction asserts predicted == booted for every pinned PCR in every
// bank the guest reported, and logs the booted event log next to the
// predicted one when they differ.
func checkPrediction(t *testing.T, pred *measure.Prediction, d *vmtest.Dump, minPinned int) {
	t.Helper()
	pinned := pred.PinnedPCRs()
	if len(pinned) < minPinned {
		t.Errorf("only PCRs %v pinned", pinned)
	}
	compared := 0
	for _, alg := range pred.Algs {
		booted := d.PCRs[alg.String()]
		if booted == nil {
			continue
		}
		for _, pcr := range pinned {
			compared++
			if want, got := pred.PCRs[alg][pcr], booted[int(pcr)]; !bytes.Equal(want, got) {
				t.Errorf("%s PCR%d: predicted %x, booted %x (%s)", alg, pcr, want, got, pred.Why[pcr])
			}
		}
	}
	if compared == 0 {
		t.Fatalf("no bank in common: predicted %v, booted %v", pred.Algs, slices.Sorted(maps.Keys(d.PCRs)))
	}
	if t.Failed() {
		logEvents(t, pred, d.EventLog)
	}
}

func logEvents(t *testing.T, pred *measure.Prediction, raw []byte) {
	l, err := measure.ParseEventLog("booted event log", raw)
	if err != nil {
		t.Logf("booted event log: %v", err)
		return
	}
	for i, e := range l.Events {
		t.Logf("booted    %2d PCR%-2d %-34s %x %s", i, e.PCR, e.Type, e.Digest(measure.AlgSHA256), measure.DescribeEvent(&e))
	}
	for i, e := range pred.Events {
		t.Logf("predicted %2d PCR%-2d %-34s %x %s", i, e.PCR, e.Type, e.Digest(measure.AlgSHA256), e.Description)
	}
}

// TestDiskOtherKeyRefused boots a UKI signed by a key that is not in db
// with the VARS store that enrols the recipe key: firmware must refuse it.
func TestDiskOtherKeyRefused(t *testing.T) {
	vmtest.Require(t)
	f := newDiskFixture(t)
	good, err := builder.BuildDisk(context.Background(), f.spec, f.in)
	if err != nil {
		t.Fatal(err)
	}
	other := *f.spec
	sb := *other.SecureBoot
	sb.Key, sb.Cert = "other.key", "other.crt"
	other.SecureBoot = &sb
	bad, err := builder.BuildDisk(context.Background(), &other, f.in)
	if err != nil {
		t.Fatal(err)
	}
	bad.Vars = good.Vars
	res, err := bootDisk(t, bad, 2*time.Minute, "Access Denied")
	if res == nil {
		t.Fatalf("boot did not run: %v", err)
	}
	if strings.Contains(res.Console, vmtest.Banner) {
		t.Fatalf("UKI signed by a key outside db booted:\n%s", res.Console)
	}
	if !strings.Contains(res.Console, "Access Denied") {
		t.Errorf("firmware console does not report \"Access Denied\":\n%s", res.Console)
	}
}

// TestDiskNoSecureBootBoots boots an unsigned UKI with the plain OVMF CODE
// and the VARS template: no authority event, SecureBoot = 0, and the stub
// must still use the embedded .cmdline (OVMF passes no load options for the
// auto-created disk boot option).
func TestDiskNoSecureBootBoots(t *testing.T) {
	vmtest.Require(t)
	f := newDiskFixture(t)
	f.spec.SecureBoot = nil
	art, err := builder.BuildDisk(context.Background(), f.spec, f.in)
	if err != nil {
		t.Fatal(err)
	}
	if art.Vars != nil || art.Authority != nil {
		t.Fatal("Secure Boot artifacts without [disk.secure_boot]")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, art.Image, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := vmtest.Boot(t.Context(), t, vmtest.Options{Code: vmtest.OVMFCode, Vars: vmtest.OVMFVars, Disk: disk, TPM: true, Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatalf("boot: %v\n%s", err, res.Console)
	}
	if !strings.Contains(res.Console, "Kernel command line: "+f.in.Cmdline) {
		t.Errorf("kernel did not boot with the UKI's command line %q", f.in.Cmdline)
	}
	pred, err := builder.PredictDisk(builder.DiskRequest{Code: readFile(t, vmtest.OVMFCode), Art: art, VarsTemplate: readFile(t, vmtest.OVMFVars)})
	if err != nil {
		t.Fatal(err)
	}
	checkPrediction(t, pred, res.Dump, 11)
}
