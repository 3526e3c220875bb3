package builder

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFirmwareSourceValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(s *FirmwareSource)
		want []string // "" means valid
	}{
		{"valid", func(*FirmwareSource) {}, nil},
		{"package", func(s *FirmwareSource) { s.Package = "Edk2" }, []string{"firmware.source.package: \"Edk2\""}},
		{"version", func(s *FirmwareSource) { s.Version = "" }, []string{"firmware.source.version"}},
		{"platform traversal", func(s *FirmwareSource) { s.Platform = "../x.dsc" }, []string{"firmware.source.platform"}},
		{"platform not dsc", func(s *FirmwareSource) { s.Platform = "OvmfPkg/OvmfPkgX64.fdf" }, []string{"firmware.source.platform"}},
		{"platform unclean", func(s *FirmwareSource) { s.Platform = "OvmfPkg//X.dsc" }, []string{"firmware.source.platform"}},
		{"arch", func(s *FirmwareSource) { s.Arch = "IA32" }, []string{`firmware.source.arch: "IA32" is not one of X64`}},
		{"build type", func(s *FirmwareSource) { s.BuildType = "release" }, []string{"firmware.source.build_type"}},
		{"toolchain", func(s *FirmwareSource) { s.Toolchain = "CLANGDWARF" }, []string{"firmware.source.toolchain"}},
		{"define", func(s *FirmwareSource) { s.Defines = []string{"A=B", "X Y"} }, []string{`firmware.source.defines[1]: "X Y"`}},
		{"define shell", func(s *FirmwareSource) { s.Defines = []string{"A=$(id)"} }, []string{"firmware.source.defines[0]"}},
		{"output", func(s *FirmwareSource) { s.Output = "FV/OVMF.fd" }, []string{"firmware.source.output"}},
		{"output sha", func(s *FirmwareSource) { s.OutputSHA256 = "ABC" }, []string{"firmware.source.output_sha256"}},
		{"file sha", func(s *FirmwareSource) { s.Files[1].SHA256 = "x" }, []string{"firmware.source.file[1].sha256"}},
		{"file size", func(s *FirmwareSource) { s.Files[2].Size = 0 }, []string{"firmware.source.file[2].size: 0 must be positive"}},
		{"file path", func(s *FirmwareSource) { s.Files[1].Name = "a/b.tar.xz" }, []string{"firmware.source.file[1].name"}},
		{"file twice", func(s *FirmwareSource) { s.Files[2] = s.Files[1] }, []string{"firmware.source.file[2].name: \"fake_1.0.orig.tar.xz\" listed twice"}},
		{"no dsc", func(s *FirmwareSource) { s.Files = s.Files[1:] }, []string{`want exactly one .dsc, named "fake_1.0-1.dsc"`}},
		{"patch name", func(s *FirmwareSource) { s.Patches = []string{"../p.patch"} }, []string{`firmware.source.patches[0]: "../p.patch" is not an input name`}},
		{"tool missing", func(s *FirmwareSource) { s.Tools = s.Tools[1:] }, []string{`toolchain package "acpica-tools" is not pinned`}},
		{"tool twice", func(s *FirmwareSource) { s.Tools = append(s.Tools, s.Tools[0]) }, []string{"pinned twice"}},
		{"grub tools", func(s *FirmwareSource) { s.GrubModules = []string{"linux"} }, []string{`"grub-common" is not pinned`, `"mtools" is not pinned`}},
		{"grub module", func(s *FirmwareSource) { s.GrubModules = []string{"Linux;"} }, []string{"firmware.source.grub_modules[0]"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, s := fakeSourcePackage(t)
			tc.edit(s)
			err := s.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid source rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFirmwareKey(t *testing.T) {
	_, s := fakeSourcePackage(t)
	base, err := FirmwareKey(s, nil)
	if err != nil {
		t.Fatal(err)
	}
	same := *s
	if k, _ := FirmwareKey(&same, nil); k != base {
		t.Errorf("equal sources, different keys")
	}
	edits := map[string]func(s *FirmwareSource){
		"file digest": func(s *FirmwareSource) {
			s.Files = append([]SourceFile(nil), s.Files...)
			s.Files[1].SHA256 = strings.Repeat("0", 64)
		},
		"define":    func(s *FirmwareSource) { s.Defines = []string{"X"} },
		"platform":  func(s *FirmwareSource) { s.Platform = "OvmfPkg/Other/Other.dsc" },
		"buildtype": func(s *FirmwareSource) { s.BuildType = "DEBUG" },
		"tool version": func(s *FirmwareSource) {
			s.Tools = append([]ToolPackage(nil), s.Tools...)
			s.Tools[0].Version = "2"
		},
		"grub": func(s *FirmwareSource) { s.GrubModules = []string{"linux"} },
	}
	for name, edit := range edits {
		c := *s
		edit(&c)
		if k, _ := FirmwareKey(&c, nil); k == base {
			t.Errorf("changing %s kept the key", name)
		}
	}
	pinned := *s
	pinned.OutputSHA256 = strings.Repeat("b", 64)
	if k, _ := FirmwareKey(&pinned, nil); k != base {
		t.Error("output_sha256 (a check, not an input) changed the key")
	}
	withPatch := *s
	withPatch.Patches = []string{"p"}
	k1, err := FirmwareKey(&withPatch, map[string][]byte{"p": []byte("one")})
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := FirmwareKey(&withPatch, map[string][]byte{"p": []byte("two")})
	if k1 == k2 || k1 == base {
		t.Error("patch contents do not change the key")
	}
	if _, err := FirmwareKey(&withPatch, nil); err == nil {
		t.Error("missing patch contents accepted")
	}
}

func TestParseFirmwareSource(t *testing.T) {
	for _, f := range []string{"builder/testdata/firmware/ovmfx64.toml", "builder/testdata/firmware/inteltdx.toml", "recipes/debian-bookworm-snp.toml"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(repoDir(t), f))
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseFirmwareSource(b)
			if err != nil {
				t.Fatal(err)
			}
			if s.Package != "edk2" || s.OutputSHA256 == "" {
				t.Errorf("package %q output_sha256 %q", s.Package, s.OutputSHA256)
			}
		})
	}
	if _, err := ParseFirmwareSource([]byte("[firmware.source]\npackage = \"edk2\"\n")); err == nil {
		t.Error("incomplete table accepted")
	}
	if _, err := ParseFirmwareSource([]byte("name = \"x\"\n")); err == nil {
		t.Error("recipe without [firmware.source] accepted")
	}
}

func TestRecipeFirmwareSourceRules(t *testing.T) {
	_, s := fakeSourcePackage(t)
	r := &Recipe{Firmware: FirmwareRef{Image: "ovmf", Source: s}}
	errs := checkFirmwareSource(r)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "excludes image, code and vars") {
		t.Errorf("image + source: %v", errs)
	}
	r.Firmware.Image = ""
	s.Patches = []string{"nope"}
	if errs := checkFirmwareSource(r); len(errs) != 1 || !strings.Contains(errs[0].Error(), `"nope" must name a file input`) {
		t.Errorf("patch naming no input: %v", errs)
	}
	s.Patches = nil
	s.Arch = "ARM"
	errs = checkFirmwareSource(r)
	if len(errs) != 1 || !errors.Is(errs[0], ErrRecipe) || !strings.Contains(errs[0].Error(), "firmware.source.arch") {
		t.Errorf("bad arch: %v", errs)
	}
	if !firmwareElsewhere(r) {
		t.Error("a recipe with [firmware.source] must not need firmware inputs")
	}
}

func TestParseSeries(t *testing.T) {
	got, err := parseSeries("series", []byte("# header\na.patch\n\nsub/b.diff -p0 # why\n  c.patch\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []patchSeries{{"a.patch", "1"}, {"sub/b.diff", "0"}, {"c.patch", "1"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(patchSeries{})); diff != "" {
		t.Errorf("parseSeries (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"../x.patch\n", "/abs.patch\n", "a.patch -R\n", "a.patch -p\n", "./a/../../b\n"} {
		if _, err := parseSeries("series", []byte(bad)); err == nil {
			t.Errorf("series %q accepted", bad)
		}
	}
}

func TestExtractTarRejects(t *testing.T) {
	tests := []struct {
		name    string
		entries []tar.Header
		strip   bool
		want    string
	}{
		{"dotdot", []tar.Header{{Name: "../evil", Typeflag: tar.TypeReg}}, false, "leaves the tree"},
		{"absolute", []tar.Header{{Name: "/etc/passwd", Typeflag: tar.TypeReg}}, false, "not a relative path"},
		{"two tops", []tar.Header{{Name: "a/x", Typeflag: tar.TypeReg}, {Name: "b/y", Typeflag: tar.TypeReg}}, true, `outside the top-level directory "a"`},
		{"through symlink", []tar.Header{{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/tmp"}, {Name: "link/x", Typeflag: tar.TypeReg}}, false, "link/x"},
		{"device", []tar.Header{{Name: "dev", Typeflag: tar.TypeChar}}, false, "unsupported tar entry type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			for _, h := range tc.entries {
				h.Mode = 0o644
				if err := tw.WriteHeader(&h); err != nil {
					t.Fatal(err)
				}
			}
			tw.Close()
			dir := t.TempDir()
			root, err := os.OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			err = extractTar(t.Context(), root, tar.NewReader(&buf), tc.strip)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func FuzzParseSeries(f *testing.F) {
	f.Add([]byte("# header\na.patch\n\nsub/b.diff -p0 # why\n"))
	f.Add([]byte("../x.patch\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		entries, err := parseSeries("series", b)
		if err != nil {
			return
		}
		var enc strings.Builder
		for _, e := range entries {
			if strings.HasPrefix(e.Name, "/") || strings.Contains("/"+e.Name+"/", "/../") {
				t.Fatalf("accepted unsafe patch path %q", e.Name)
			}
			enc.WriteString(e.Name + " -p" + e.Strip + "\n")
		}
		again, err := parseSeries("series", []byte(enc.String()))
		if err != nil {
			t.Fatalf("re-parsing %q: %v", enc.String(), err)
		}
		if diff := cmp.Diff(entries, again, cmp.AllowUnexported(patchSeries{})); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
