package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/ulikunitz/xz"
)

// fakeEdk2 is a working stand-in for the edk2 source tree: edksetup.sh
// defines a `build` function that writes an image made from the patched
// payload, the platform and the -D flags, so the whole pipeline (verify,
// unpack, patch, compile, cache) runs in milliseconds.
var fakeEdk2 = map[string]string{
	"edksetup.sh": `build() {
  plat=""; defs=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -p) plat=$2; shift;;
      -D) defs="$defs $2"; shift;;
    esac
    shift
  done
  case "$plat" in *Fail*) echo "FAKE-BUILD-FAILED" >&2; return 1;; esac
  out=$(sed -n 's/^ *OUTPUT_DIRECTORY *= *//p' "$plat")/RELEASE_GCC5/FV
  mkdir -p "$out"
  { echo FAKE-OVMF; cat payload.txt; echo "platform $plat"; echo "defines$defs"; } > "$out/OVMF.fd"
}
`,
	"BaseTools/GNUmakefile":      "all:\n\t@echo FAKE-BASETOOLS\n",
	"payload.txt":                "original\n",
	"OvmfPkg/Fake/Fake.dsc":      "[Defines]\n  OUTPUT_DIRECTORY = Build/Fake\n",
	"OvmfPkg/Fail/Fail.dsc":      "[Defines]\n  OUTPUT_DIRECTORY = Build/Fail\n",
	"OvmfPkg/Other/Other.dsc":    "[Defines]\n  OUTPUT_DIRECTORY = Build/Other\n",
	"OvmfPkg/Grub/GrubPlat.dsc":  "[Defines]\n  OUTPUT_DIRECTORY = Build/G\n  PREBUILD = sh OvmfPkg/Grub/grub.sh\n",
	"OvmfPkg/Weird/Prebuild.dsc": "[Defines]\n  OUTPUT_DIRECTORY = Build/W\n  PREBUILD = make evil\n",
}

var fakeDebian = map[string]string{
	"debian/patches/series": "# comment\nfix-payload.patch\n",
	"debian/patches/fix-payload.patch": `--- a/payload.txt
+++ b/payload.txt
@@ -1 +1 @@
-original
+patched by debian
`,
	"debian/rules": "#!/usr/bin/make -f\n",
}

// writeTarXZ writes files (sorted by name, under prefix) as a .tar.xz.
func writeTarXZ(t testing.TB, p, prefix string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	xw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(xw)
	if prefix != "" {
		if err := tw.WriteHeader(&tar.Header{Name: prefix + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range sortedKeys(files) {
		full := name
		if prefix != "" {
			full = prefix + "/" + name
		}
		mode := int64(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		if err := tw.WriteHeader(&tar.Header{Name: full, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(files[name]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := xw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

func pinFile(t testing.TB, p string) SourceFile {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return SourceFile{Name: filepath.Base(p), SHA256: hex.EncodeToString(sum[:]), Size: int64(len(b))}
}

// fakeSourcePackage writes a "fake" 1.0-1 source package into a temp dir
// and returns the dir and a FirmwareSource pinning it.
func fakeSourcePackage(t testing.TB) (string, *FirmwareSource) {
	t.Helper()
	dir := t.TempDir()
	writeTarXZ(t, filepath.Join(dir, "fake_1.0.orig.tar.xz"), "fake-1.0", fakeEdk2)
	writeTarXZ(t, filepath.Join(dir, "fake_1.0-1.debian.tar.xz"), "", fakeDebian)
	orig := pinFile(t, filepath.Join(dir, "fake_1.0.orig.tar.xz"))
	deb := pinFile(t, filepath.Join(dir, "fake_1.0-1.debian.tar.xz"))
	dsc := &DebianSourceControl{Source: "fake", Version: "1.0-1", Format: "3.0 (quilt)", Files: []SourceFile{orig, deb}}
	b, err := dsc.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fake_1.0-1.dsc"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	src := &FirmwareSource{
		Package: "fake", Version: "1.0-1",
		Files:    []SourceFile{pinFile(t, filepath.Join(dir, "fake_1.0-1.dsc")), orig, deb},
		Platform: "OvmfPkg/Fake/Fake.dsc", Arch: "X64", BuildType: "RELEASE", Toolchain: "GCC5",
		Defines: []string{"SECURE_BOOT_ENABLE=TRUE", "FD_SIZE_2MB"}, Output: "OVMF.fd",
		Tools: fakeTools(),
	}
	return dir, src
}

func fakeTools() []ToolPackage {
	var ts []ToolPackage
	for _, p := range requiredTools {
		ts = append(ts, ToolPackage{Package: p, Version: "1.0-" + p})
	}
	return ts
}

// fakePackages is a PackageQuerier over a fixed package list.
type fakePackages map[string]string

func (f fakePackages) InstalledVersion(_ context.Context, pkg string) (string, bool, error) {
	v, ok := f[pkg]
	return v, ok, nil
}

func installed(tools []ToolPackage) fakePackages {
	m := fakePackages{}
	for _, t := range tools {
		m[t.Package] = t.Version
	}
	return m
}

func fakeOptions(t testing.TB, srcDir string, src *FirmwareSource) FirmwareOptions {
	t.Helper()
	tmp := t.TempDir()
	return FirmwareOptions{
		SourceDir: srcDir, CacheDir: filepath.Join(tmp, "cache"), BuildRoot: filepath.Join(tmp, "build"),
		Jobs: 1, Packages: installed(src.Tools),
	}
}

func TestBuildFirmwareFake(t *testing.T) {
	srcDir, src := fakeSourcePackage(t)
	opts := fakeOptions(t, srcDir, src)
	first, err := BuildFirmware(t.Context(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(first.Path)
	if err != nil {
		t.Fatal(err)
	}
	want := "FAKE-OVMF\npatched by debian\nplatform OvmfPkg/Fake/Fake.dsc\ndefines SECURE_BOOT_ENABLE=TRUE FD_SIZE_2MB\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("image (-want +got):\n%s", diff)
	}
	if first.Cached {
		t.Error("first build reported as cached")
	}
	if diff := cmp.Diff([]string{"fix-payload.patch"}, first.Build.Patches); diff != "" {
		t.Errorf("patches (-want +got):\n%s", diff)
	}
	wantCmd := []string{"build", "-a", "X64", "-t", "GCC5", "-b", "RELEASE", "-p", "OvmfPkg/Fake/Fake.dsc",
		"-D", "SECURE_BOOT_ENABLE=TRUE", "-D", "FD_SIZE_2MB"}
	if diff := cmp.Diff(wantCmd, first.Build.Command); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(opts.BuildRoot); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("build root left behind after success: %v", err)
	}

	second, err := BuildFirmware(t.Context(), src, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Cached || second.Path != first.Path || second.Build.Output != first.Build.Output {
		t.Errorf("second build: cached=%v path=%s output=%+v, want a cache hit of %s", second.Cached, second.Path, second.Build.Output, first.Path)
	}

	patched := *src
	patched.Patches = []string{"extra"}
	popts := opts
	popts.Patches = map[string][]byte{"extra": []byte("--- a/payload.txt\n+++ b/payload.txt\n@@ -1 +1 @@\n-patched by debian\n+patched by the recipe\n")}
	pres, err := BuildFirmware(t.Context(), &patched, popts)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(pres.Path); !strings.Contains(string(got), "\npatched by the recipe\n") {
		t.Errorf("recipe patch not applied after the series:\n%s", got)
	}
	if diff := cmp.Diff([]string{"fix-payload.patch", "input:extra"}, pres.Build.Patches); diff != "" {
		t.Errorf("patches (-want +got):\n%s", diff)
	}

	wrongPin := *src
	wrongPin.OutputSHA256 = strings.Repeat("c", 64)
	if _, err := BuildFirmware(t.Context(), &wrongPin, opts); !errors.Is(err, ErrOutputDigest) {
		t.Errorf("cache hit with a wrong output_sha256: %v, want ErrOutputDigest", err)
	}

	other := *src
	other.Defines = []string{"FD_SIZE_4MB"}
	third, err := BuildFirmware(t.Context(), &other, opts)
	if err != nil {
		t.Fatal(err)
	}
	if third.Cached || third.Path == first.Path {
		t.Errorf("changed defines reused the cache entry %s", third.Path)
	}
}

// TestBuildFirmwareTampered breaks one input at a time; each must fail
// before any compiler runs and leave nothing in the cache.
func TestBuildFirmwareTampered(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(t *testing.T, dir string, s *FirmwareSource, q fakePackages)
		wantErr error
		want    []string // substrings of the error
	}{
		{
			name: "orig tarball digest",
			edit: func(t *testing.T, dir string, s *FirmwareSource, _ fakePackages) {
				p := filepath.Join(dir, "fake_1.0.orig.tar.xz")
				b, _ := os.ReadFile(p)
				b[100] ^= 1
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: ErrSourceDigest,
			want:    []string{"fake_1.0.orig.tar.xz", s256Prefix},
		},
		{
			name: "pin digest",
			edit: func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) {
				s.Files[2].SHA256 = strings.Repeat("0", 64)
			},
			wantErr: ErrSourceDigest,
			want:    []string{"fake_1.0-1.debian.tar.xz", "recipe pins sha256 " + strings.Repeat("0", 64)},
		},
		{
			name: "source file missing",
			edit: func(t *testing.T, dir string, _ *FirmwareSource, _ fakePackages) {
				if err := os.Remove(filepath.Join(dir, "fake_1.0-1.dsc")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"source file fake_1.0-1.dsc"},
		},
		{
			name:    "toolchain package missing",
			edit:    func(_ *testing.T, _ string, _ *FirmwareSource, q fakePackages) { delete(q, "nasm") },
			wantErr: ErrToolchain,
			want:    []string{"package nasm is not installed", "apt-get install nasm=1.0-nasm"},
		},
		{
			name:    "toolchain version",
			edit:    func(_ *testing.T, _ string, _ *FirmwareSource, q fakePackages) { q["gcc"] = "9" },
			wantErr: ErrToolchain,
			want:    []string{"package gcc is version 9, recipe pins 1.0-gcc"},
		},
		{
			name:    "platform missing",
			edit:    func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) { s.Platform = "OvmfPkg/Nope/Nope.dsc" },
			wantErr: ErrPlatform,
			want:    []string{"OvmfPkg/Nope/Nope.dsc", "platforms under OvmfPkg: OvmfPkg/Fail/Fail.dsc, OvmfPkg/Fake/Fake.dsc"},
		},
		{
			name: "grub platform without modules",
			edit: func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) {
				s.Platform = "OvmfPkg/Grub/GrubPlat.dsc"
			},
			want: []string{"grub_modules", "PREBUILD OvmfPkg/Grub/grub.sh"},
		},
		{
			name: "unsupported prebuild",
			edit: func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) {
				s.Platform = "OvmfPkg/Weird/Prebuild.dsc"
			},
			want: []string{`PREBUILD "make evil" is not supported`},
		},
		{
			name: "dsc names another version",
			edit: func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) {
				s.Version = "1.0-2"
				s.Files[0].Name = "fake_1.0-2.dsc"
			},
			want: []string{"source file fake_1.0-2.dsc"},
		},
		{
			name: "compile fails",
			edit: func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) { s.Platform = "OvmfPkg/Fail/Fail.dsc" },
			want: []string{"building OvmfPkg/Fail/Fail.dsc", "FAKE-BUILD-FAILED"},
		},
		{
			name: "output digest",
			edit: func(_ *testing.T, _ string, s *FirmwareSource, _ fakePackages) {
				s.OutputSHA256 = strings.Repeat("a", 64)
			},
			wantErr: ErrOutputDigest,
			want:    []string{"recipe pins " + strings.Repeat("a", 64)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, src := fakeSourcePackage(t)
			opts := fakeOptions(t, dir, src)
			q := opts.Packages.(fakePackages)
			tc.edit(t, dir, src, q)
			_, err := BuildFirmware(t.Context(), src, opts)
			if err == nil {
				t.Fatal("build succeeded")
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if ents, _ := os.ReadDir(opts.CacheDir); len(ents) != 0 {
				t.Errorf("cache has %d entries after a failed build", len(ents))
			}
			compiled := false
			if b, err := os.ReadFile(filepath.Join(opts.BuildRoot, "build.log")); err == nil {
				compiled = strings.Contains(string(b), "FAKE-BASETOOLS")
			}
			if compiled != (tc.name == "compile fails" || tc.name == "output digest") {
				t.Errorf("compiler ran: %v", compiled)
			}
		})
	}
}

const s256Prefix = "got sha256 "

// TestMakeGrubReproducible generates grub.efi twice, in different trees,
// time zones and umasks, and expects the same bytes and the mtimes that
// make the platform's PREBUILD keep it.
func TestMakeGrubReproducible(t *testing.T) {
	for _, tool := range []string{"grub-mkimage", "mkfs.msdos", "mcopy"} {
		if _, err := os.Stat(filepath.Join("/usr/bin", tool)); err != nil {
			if _, err2 := os.Stat(filepath.Join("/usr/sbin", tool)); err2 != nil && os.Getenv("MKCVM_FIRMWARE_BUILD") != "1" {
				t.Skipf("%s not installed", tool)
			}
		}
	}
	modules := []string{"fat", "memdisk", "normal", "configfile", "echo", "linux"}
	var sums []string
	for i, tz := range []string{"UTC", "Asia/Tokyo"} {
		root := t.TempDir()
		dir := filepath.Join(root, "edk2", "OvmfPkg", "AmdSev", "Grub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"grub.cfg", "grub.sh"} {
			if err := os.WriteFile(filepath.Join(dir, f), []byte("echo "+f+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("TZ", tz) // must not matter: the build environment is fixed
		b := &fwBuild{src: &FirmwareSource{GrubModules: modules}, tree: filepath.Join(root, "edk2"),
			env: firmwareEnv(root), logw: testLogWriter{t}}
		sum, err := b.makeGrub(t.Context(), "OvmfPkg/AmdSev/Grub")
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		sums = append(sums, sum)
		efi, _ := os.Stat(filepath.Join(dir, "grub.efi"))
		cfg, _ := os.Stat(filepath.Join(dir, "grub.cfg"))
		if efi == nil || cfg == nil || !efi.ModTime().After(cfg.ModTime()) {
			t.Errorf("run %d: grub.efi is not newer than grub.cfg", i)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 3 {
			t.Errorf("run %d: intermediates left: %v", i, ents)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("grub.efi differs between runs: %s vs %s", sums[0], sums[1])
	}
}

// TestFirmwareFromSourceHook runs Build's [firmware.source] step on the
// fake package: the image becomes the measured firmware and the bundle
// gets it and its build record.
func TestFirmwareFromSourceHook(t *testing.T) {
	srcDir, src := fakeSourcePackage(t)
	src.Patches = []string{"extra"}
	patch := []byte("--- a/payload.txt\n+++ b/payload.txt\n@@ -1 +1 @@\n-patched by debian\n+from the recipe\n")
	r := &Recipe{Firmware: FirmwareRef{Source: src}}
	mi := &MeasureInputs{Inputs: map[string][]byte{"extra": patch}}
	opts := fakeOptions(t, srcDir, src)
	arts, err := firmwareFromSource(WithFirmwareOptions(t.Context(), opts), r, mi)
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 2 || arts[0].Name != FirmwareImageFile || arts[0].Role != "firmware" || arts[1].Name != FirmwareBuildFile {
		t.Fatalf("artifacts %+v", arts)
	}
	if !bytes.Equal(mi.Firmware, arts[0].Data) || !bytes.Contains(mi.Firmware, []byte("from the recipe")) {
		t.Errorf("measured firmware %q", mi.Firmware)
	}
	if !bytes.Contains(arts[1].Data, []byte(`"input:extra"`)) || !bytes.Contains(arts[1].Data, []byte(`"sha256": "`+src.Files[1].SHA256)) {
		t.Errorf("build record lacks the patch or the source digests:\n%s", arts[1].Data)
	}
	if _, err := firmwareFromSource(t.Context(), &Recipe{}, &MeasureInputs{}); err != nil {
		t.Errorf("recipe without [firmware.source]: %v", err)
	}
	t.Setenv("MKCVM_SRCDIR", "")
	if _, err := firmwareFromSource(t.Context(), r, mi); err == nil || !strings.Contains(err.Error(), "MKCVM_SRCDIR") {
		t.Errorf("no source dir: %v", err)
	}
}

func TestClearBuildRootRefusesForeignDirs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := clearBuildRoot(dir); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("foreign directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "precious")); err != nil {
		t.Errorf("foreign file removed: %v", err)
	}
	if err := clearBuildRoot("relative/dir"); err == nil {
		t.Error("relative build root accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, buildRootMarker), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := clearBuildRoot(dir); err != nil {
		t.Errorf("marked build root: %v", err)
	}
}
