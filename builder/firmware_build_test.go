package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/mkcvm/mkcvm/internal/vmtest"
	"github.com/mkcvm/mkcvm/measure"
	"github.com/mkcvm/mkcvm/ovmf"
)

// The tests in this file build OVMF from Debian's edk2 source package: a
// few minutes of compiling per platform. They run when
// MKCVM_FIRMWARE_BUILD=1 (mk/firmware.mk sets it for `make test`), with the
// source package files in $MKCVM_SRCDIR. The recipes pin output_sha256, so
// each build also checks that this machine reproduces the bytes recorded
// in testdata/provenance/firmware.md.

// realFirmwareOptions skips the test unless real firmware builds are on.
func realFirmwareOptions(t *testing.T) FirmwareOptions {
	t.Helper()
	if os.Getenv("MKCVM_FIRMWARE_BUILD") != "1" {
		t.Skip("set MKCVM_FIRMWARE_BUILD=1 and MKCVM_SRCDIR to build OVMF from source (make test does)")
	}
	src := os.Getenv("MKCVM_SRCDIR")
	if src == "" {
		t.Fatal("MKCVM_FIRMWARE_BUILD=1 needs MKCVM_SRCDIR (run `make firmware-src`)")
	}
	return FirmwareOptions{
		SourceDir: src, CacheDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil)),
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func loadFirmwareSource(t *testing.T, rel string) *FirmwareSource {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseFirmwareSource(b)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	if s.OutputSHA256 == "" {
		t.Fatalf("%s: output_sha256 not pinned", rel)
	}
	return s
}

func buildReal(t *testing.T, s *FirmwareSource, opts FirmwareOptions) []byte {
	t.Helper()
	res, err := BuildFirmware(t.Context(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Cached {
		t.Fatalf("first build in %s reported a cache hit", opts.CacheDir)
	}
	fw, err := os.ReadFile(res.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s sha256 %s", s.Platform, res.Path, res.Build.Output.SHA256)
	return fw
}

// TestFirmwareBuildAmdSev builds the SNP recipe's AmdSevX64 twice (the
// second time with another cache directory, time zone and umask), checks
// both against the pinned sha256, parses its SEV metadata and compares SNP
// launch digests with values from sev-snp-measure.
func TestFirmwareBuildAmdSev(t *testing.T) {
	opts := realFirmwareOptions(t)
	s := loadFirmwareSource(t, "recipes/debian-bookworm-snp.toml")
	r, _, root, err := LoadRecipe(filepath.Join(repoDir(t), "recipes", "debian-bookworm-snp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if opts.Patches, err = ReadPatchInputs(root, r); err != nil {
		t.Fatal(err)
	}
	fw := buildReal(t, s, opts)
	checkSNPFirmware(t, fw)
	checkSNPKnownAnswers(t, fw)

	again, err := BuildFirmware(t.Context(), s, opts)
	if err != nil || !again.Cached {
		t.Errorf("rebuild with the same inputs: cached=%v err=%v, want a cache hit", again != nil && again.Cached, err)
	}

	t.Setenv("TZ", "Pacific/Kiritimati")
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	opts2 := opts
	opts2.CacheDir = t.TempDir()
	second := buildReal(t, s, opts2)
	if d := firstDiff(fw, second); d >= 0 {
		t.Errorf("second build differs from the first at offset %#x", d)
	}
	seedSharedFirmwareCache(t, s, opts)
	checkSNPRecipeCoversKernel(t, r, root, opts)
}

// checkSNPRecipeCoversKernel dry-runs `mkcvm build` of the SNP recipe with
// the firmware built above (a cache hit) and asserts that every SNP shape's
// launch digest covers kernel, initrd and command line.
func checkSNPRecipeCoversKernel(t *testing.T, r *Recipe, root *os.Root, opts FirmwareOptions) {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoDir(t), "recipes", "debian-bookworm-snp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithFirmwareOptions(t.Context(), opts)
	res, err := Build(ctx, r, BuildOptions{RecipeText: text, ModuleDir: repoDir(t), Cache: sharedCache(t),
		Fetcher: NewSourceFetcher(r, root, debDirs(t)), DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, sh := range res.Manifest.Shapes {
		if sh.Platform != "snp" {
			continue
		}
		n++
		if sh.SNP == nil || !sh.SNP.KernelHashes || !sh.SNP.CoversKernel {
			t.Errorf("shape %s: SNP values %+v do not cover the kernel (notes %q)", sh.Name, sh.SNP, sh.Notes)
		}
	}
	if n == 0 {
		t.Error("no SNP shapes in the manifest")
	}
	found := false
	for _, a := range res.Manifest.Artifacts {
		if a.Name == FirmwareImageFile && a.Role == "firmware" {
			found = a.SHA256 == r.Firmware.Source.OutputSHA256
		}
	}
	if !found {
		t.Errorf("manifest artifacts %+v lack %s with the pinned sha256", res.Manifest.Artifacts, FirmwareImageFile)
	}
}

// seedSharedFirmwareCache copies a verified cache entry into
// $MKCVM_FIRMWARE_CACHE (set by make test), so that later tests building
// the same recipe (TestRecipes) get a cache hit instead of compiling again.
func seedSharedFirmwareCache(t *testing.T, s *FirmwareSource, opts FirmwareOptions) {
	shared := os.Getenv("MKCVM_FIRMWARE_CACHE")
	if shared == "" {
		return
	}
	key, err := FirmwareKey(s, opts.Patches)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(shared, key)
	if _, err := os.Stat(dst); err == nil {
		return
	}
	if err := os.MkdirAll(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(shared, ".seed-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	if err := os.CopyFS(filepath.Join(tmp, "e"), os.DirFS(filepath.Join(opts.CacheDir, key))); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "e"), dst); err != nil {
		t.Fatal(err)
	}
	if r, err := cachedFirmware(shared, key); err != nil || r == nil {
		t.Fatalf("seeding %s: %v", dst, err)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// checkSNPFirmware parses the footer table and SEV metadata: the kernel
// hashes section exists and holds the SEV hash table.
func checkSNPFirmware(t *testing.T, fw []byte) {
	t.Helper()
	tab, err := ovmf.ParseFooterTable("AmdSevX64 OVMF.fd", fw)
	if err != nil {
		t.Fatal(err)
	}
	md, err := ovmf.ParseSEVMetadata("AmdSevX64 OVMF.fd", fw, tab)
	if err != nil {
		t.Fatal(err)
	}
	ht, err := ovmf.ParseSEVHashTableEntry("AmdSevX64 OVMF.fd", tab)
	if err != nil {
		t.Fatal(err)
	}
	if !ht.Supported() {
		t.Fatal("SEV hash table GPA is 0")
	}
	found := false
	for _, sec := range md.Sections {
		t.Logf("SEV metadata section %-17s gpa %#x size %#x", sec.Type, sec.GPA, sec.Size)
		if sec.Type == ovmf.SNPKernelHashes {
			found = true
			if ht.GPA < sec.GPA || uint64(ht.GPA)+uint64(ht.Size) > sec.End() {
				t.Errorf("SEV hash table %#x+%#x lies outside the SNP_KERNEL_HASHES section %#x+%#x", ht.GPA, ht.Size, sec.GPA, sec.Size)
			}
		}
	}
	if !found {
		t.Error("no SNP_KERNEL_HASHES section in the SEV metadata")
	}
}

// snpKnownAnswers are SNP launch digests of the pinned AmdSevX64 build
// computed by sev-snp-measure (virtee/sev-snp-measure, run locally; the
// commands are in testdata/provenance/firmware.md) with the Debian kernel
// vmlinuz-6.1.0-50-amd64 and the deterministic initrds of kaInitrd.
var snpKnownAnswers = []struct {
	name     string
	vcpus    int
	vcpuType string
	features uint64
	kernel   bool // false: firmware only (the hashes page is a zero page)
	initrd   int  // kaInitrd length, -1: no initrd
	cmdline  string
	want     string
}{
	{"1-epyc-v4", 1, "EPYC-v4", 0x1, true, 1280000, "console=ttyS0 panic=-1",
		"bc13e33bebba8624e757b184b9fd213a9359e7cd6e7adba1afe964981c7206019c9b1d707a9745fba7a5992aefe5b5dc"},
	{"4-epyc-milan", 4, "EPYC-Milan", 0x1, true, 777777, "console=ttyS0",
		"678d668f4fd9c8cf707544fa16da41bfd4543d0486cb251d46dcfce127dec9ed013389bb6a4b13c1d88abebc9e1615eb"},
	{"2-epyc-genoa-debugswap-kernel-only", 2, "EPYC-Genoa", 0x21, true, -1, "",
		"d06ae27292e53f45aed1063c1bbf2336a5655dbfc9b47a1337e32221df1300fa45128b81b15d0c57711e43b02bbec4b0"},
	{"64-epyc-rome", 64, "EPYC-Rome", 0x1, true, 1280000, "console=ttyS0 panic=-1 root=/dev/vda1 ro quiet mkcvm.test=1",
		"3c0c99e3003e7dbbd49e1651664f54c571aef60cd6b83bf0e34935e5fe73e060768f4629dc34f3c106ad61000f597b13"},
	{"1-epyc-v4-firmware-only", 1, "EPYC-v4", 0x1, false, -1, "",
		"8f9faef192406e8b9f9d1dfc14bc3f2868d5d1508f61b45cb61f7b4cc6b7f5b947d501ec33a926e79fa7f81c9e5d1f68"},
}

// kaInitrd is a deterministic stand-in initrd: n bytes of the sha256
// chain used in testdata/provenance/firmware.md.
func kaInitrd(n int) []byte {
	var b []byte
	for i := 0; len(b) < n; i++ {
		s := sha256.Sum256([]byte(strconv.Itoa(i)))
		b = append(b, s[:]...)
	}
	return b[:n]
}

func checkSNPKnownAnswers(t *testing.T, fw []byte) {
	t.Helper()
	kernel := vmtest.DebianKernel(t)
	kb, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	for _, ka := range snpKnownAnswers {
		t.Run(ka.name, func(t *testing.T) {
			var rd []byte
			if ka.initrd >= 0 {
				rd = kaInitrd(ka.initrd)
			}
			var h *measure.SEVHashes
			if ka.kernel {
				hh := measure.NewSEVHashes(kb, rd, ka.cmdline)
				h = &hh
			}
			vt, ok := measure.LookupVCPUType(ka.vcpuType)
			if !ok {
				t.Fatalf("unknown vCPU type %s", ka.vcpuType)
			}
			got, err := measure.SNPLaunchDigest("AmdSevX64 OVMF.fd", fw, h, measure.SNPShape{
				VCPUs: ka.vcpus, VCPUSig: vt.Sig(), VMM: measure.VMMQEMU, GuestFeatures: ka.features})
			if err != nil {
				t.Fatal(err)
			}
			if g := hex.EncodeToString(got[:]); g != ka.want {
				t.Errorf("launch digest %s, sev-snp-measure says %s", g, ka.want)
			}
		})
	}
}

// TestFirmwareBuildOvmfX64 builds OvmfPkgX64 with Debian's OVMF.fd flags
// and boots it in QEMU (TCG) with swtpm, a Debian kernel and mkcvm-init.
func TestFirmwareBuildOvmfX64(t *testing.T) {
	opts := realFirmwareOptions(t)
	s := loadFirmwareSource(t, "builder/testdata/firmware/ovmfx64.toml")
	fw := buildReal(t, s, opts)
	if _, err := ovmf.ParseFooterTable("OvmfPkgX64 OVMF.fd", fw); err != nil {
		t.Fatal(err)
	}
	vmtest.Require(t)
	dir := t.TempDir()
	bios := filepath.Join(dir, "OVMF.fd")
	if err := os.WriteFile(bios, fw, 0o644); err != nil {
		t.Fatal(err)
	}
	rd := filepath.Join(dir, "initrd.cpio")
	vmtest.WriteInitOnly(t, rd, vmtest.BuildInit(t))
	kernel := vmtest.DebianKernel(t)
	const cmdline = "console=ttyS0 panic=-1"
	res, err := vmtest.Boot(t.Context(), t, vmtest.Options{
		BIOS: bios, Kernel: kernel, Initrd: rd, Append: cmdline, TPM: true, MemoryMiB: 1024, VCPUs: 1,
	})
	if err != nil {
		t.Fatalf("boot: %v\nconsole:\n%s", err, consoleTail(res))
	}
	if !res.Dump.Banner || !res.Dump.Done {
		t.Fatalf("init did not finish (banner %v, done %v):\n%s", res.Dump.Banner, res.Dump.Done, consoleTail(res))
	}
	if len(res.Dump.EventLog) == 0 || len(res.Dump.PCRs["sha256"]) != 24 {
		t.Fatalf("measured boot: event log %d bytes, %d sha256 PCRs; want a log and 24 PCRs", len(res.Dump.EventLog), len(res.Dump.PCRs["sha256"]))
	}
	checkPredictedPCRs(t, fw, kernel, rd, cmdline, res.Dump)
}

// ovmf2MBVarsSize is the VARS part at the start of a FD_SIZE_2MB combined
// OVMF.fd (OvmfPkg/OvmfPkgDefines.fdf.inc, VARS_SIZE = 0x20000); the CODE
// part follows it.
const ovmf2MBVarsSize = 0x20000

// checkPredictedPCRs predicts the direct boot's PCRs from the built
// firmware with package measure (no platform profile, so PCR 0 and 10 are
// not pinned) and compares every pinned PCR with the booted guest's.
func checkPredictedPCRs(t *testing.T, fw []byte, kernel, initrdPath, cmdline string, d *vmtest.Dump) {
	t.Helper()
	code, vars := fw[ovmf2MBVarsSize:], fw[:ovmf2MBVarsSize]
	an, err := measure.AnalyzeOVMF("OvmfPkgX64 CODE", code)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := os.ReadFile(kernel)
	if err != nil {
		t.Fatal(err)
	}
	rdb, err := os.ReadFile(initrdPath)
	if err != nil {
		t.Fatal(err)
	}
	pred, err := measure.PredictDirectBoot(&measure.DirectBoot{Firmware: an, Vars: vars, Kernel: kb, Initrd: rdb,
		Cmdline: cmdline, Machine: "q35", MemoryMiB: 1024, VCPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	pinned := pred.PinnedPCRs()
	if len(pinned) < 8 {
		t.Errorf("only PCRs %v predicted", pinned)
	}
	for _, i := range pinned {
		got := hex.EncodeToString(d.PCRs["sha256"][int(i)])
		if want := hex.EncodeToString(pred.PCRs[measure.AlgSHA256][i]); got != want {
			t.Errorf("PCR%d (sha256): booted %s, predicted %s", i, got, want)
		}
	}
}

// tdxBuildMRTD is the MRTD of the pinned IntelTdxX64 build (output_sha256
// 6b57b985...) for each page order, computed by td-shim's stand-alone
// td_shim_tee_info_hash.py (confidential-containers/td-shim commit
// 125eeab58f69b891175c8803b4a824bfed7389c1, Python 3.11.7):
// `python3 td_shim_tee_info_hash.py -l off --image OVMF.fd` (single) and
// its two-pass variant (testdata/provenance/tdx.md and firmware.md).
var tdxBuildMRTD = map[measure.TDXPageOrder]string{
	measure.PageOrderSingle:  "c98f432208e35dcccee5668ffb1ad79e7096598c33c96502c4e3a80ab7073400a0c8827df68f7c92d3fd280464a0b067",
	measure.PageOrderTwoPass: "21e7d07c0a8a00c04ff4c2ac0fbf4027d9097b54cf4d807718f942e08940d10f89e2954e923b1b63374cd33f275c18ba",
}

// TestFirmwareBuildIntelTdx builds IntelTdxX64 (TDVF), parses its TDX
// metadata and compares its MRTD with td-shim's.
func TestFirmwareBuildIntelTdx(t *testing.T) {
	opts := realFirmwareOptions(t)
	s := loadFirmwareSource(t, "builder/testdata/firmware/inteltdx.toml")
	fw := buildReal(t, s, opts)
	md, err := ovmf.ParseTDXMetadata("IntelTdxX64 OVMF.fd", fw)
	if err != nil {
		t.Fatal(err)
	}
	if len(md.Sections) == 0 {
		t.Error("TDX metadata has no sections")
	}
	for _, order := range []measure.TDXPageOrder{measure.PageOrderSingle, measure.PageOrderTwoPass} {
		got, err := measure.MRTD(fw, md, order)
		if err != nil {
			t.Fatalf("%s: %v", order, err)
		}
		if g := hex.EncodeToString(got[:]); g != tdxBuildMRTD[order] {
			t.Errorf("MRTD (%s) %s, td-shim says %s", order, g, tdxBuildMRTD[order])
		}
	}
}

func consoleTail(res *vmtest.Result) string {
	if res == nil {
		return ""
	}
	lines := strings.Split(res.Console, "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
