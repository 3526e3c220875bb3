package builder

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// FirmwareSource is the recipe input kind for OVMF built from a pinned
// Debian edk2 source package (recipe table [firmware.source]). Every field
// takes part in the build's cache key, so two builds with equal
// FirmwareSource values are the same build. See docs/firmware.md.
type FirmwareSource struct {
	// Package and Version name the Debian source package, e.g. "edk2" and
	// "2022.11-6+deb12u2". They select the .dsc among Files and are
	// checked against its Source and Version fields.
	Package string `toml:"package" json:"package"`
	Version string `toml:"version" json:"version"`
	// Files pins the source package's files (.dsc, orig and debian
	// tarballs) by sha256 and size. They are checked before anything is
	// unpacked or compiled.
	Files []SourceFile `toml:"file" json:"files"`
	// Platform is the edk2 platform description to build, relative to the
	// source tree, e.g. "OvmfPkg/AmdSev/AmdSevX64.dsc".
	Platform string `toml:"platform" json:"platform"`
	// Arch is the edk2 target architecture: "X64".
	Arch string `toml:"arch" json:"arch"`
	// BuildType is RELEASE, DEBUG or NOOPT.
	BuildType string `toml:"build_type" json:"build_type"`
	// Toolchain is the edk2 tool chain tag: "GCC5" (Debian's).
	Toolchain string `toml:"toolchain" json:"toolchain"`
	// Defines are passed to edk2's build as -D NAME[=VALUE], in order.
	Defines []string `toml:"defines" json:"defines"`
	// Output is the file under the platform's FV directory to keep, e.g.
	// "OVMF.fd".
	Output string `toml:"output" json:"output"`
	// OutputSHA256, when set, is the expected sha256 of Output: a build
	// that produces other bytes fails (the recipe then pins a reproducible
	// result, not only its inputs).
	OutputSHA256 string `toml:"output_sha256" json:"output_sha256,omitempty"`
	// Patches name recipe inputs (file inputs, pinned by sha256 in
	// [inputs]) applied after the Debian patch series, in order, with
	// patch -p1.
	Patches []string `toml:"patches" json:"patches,omitempty"`
	// Tools pins the Debian packages of the build toolchain by version.
	// The installed versions must match exactly.
	Tools []ToolPackage `toml:"tool" json:"tools"`
	// GrubModules lists the GRUB modules of the grub.efi that AmdSevX64
	// embeds (OvmfPkg/AmdSev/Grub). Required when the platform runs
	// OvmfPkg/AmdSev/Grub/grub.sh as PREBUILD; must be empty otherwise.
	GrubModules []string `toml:"grub_modules" json:"grub_modules,omitempty"`
}

// SourceFile is one pinned file of a Debian source package.
type SourceFile struct {
	Name   string `toml:"name" json:"name"` // base name, e.g. edk2_2022.11.orig.tar.xz
	SHA256 string `toml:"sha256" json:"sha256"`
	Size   int64  `toml:"size" json:"size"`
}

// ToolPackage is one Debian package of the build toolchain, pinned by
// version.
type ToolPackage struct {
	Package string `toml:"package" json:"package"`
	Version string `toml:"version" json:"version"`
}

// Firmware platform parameters mkcvm knows how to build.
var (
	firmwareArches     = []string{"X64"}
	firmwareBuildTypes = []string{"DEBUG", "NOOPT", "RELEASE"}
	firmwareToolchains = []string{"GCC5"}
)

// requiredTools are the Debian packages every edk2 build runs (compilers,
// assembler, ASL compiler, BaseTools' libuuid headers, python, patch).
// A recipe must pin each of them in [[firmware.source.tool]].
var requiredTools = []string{"acpica-tools", "g++", "gcc", "make", "nasm", "patch", "python3", "uuid-dev"}

// grubTools are the packages the embedded grub.efi of AmdSevX64 needs:
// grub-mkimage, the x86_64-efi modules, mkfs.msdos and mcopy.
var grubTools = []string{"dosfstools", "grub-common", "grub-efi-amd64-bin", "mtools"}

var (
	debPackageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debVersionRE = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	fileNameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+~-]*$`)
	patchInputRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	platformRE   = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_./-]*\.dsc$`)
	defineRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.:/+-]*)?$`)
	grubModuleRE = regexp.MustCompile(`^[a-z0-9_]+$`)
)

func init() {
	firmwareElsewhere = func(r *Recipe) bool { return r.Firmware.Source != nil }
	recipeChecks = append(recipeChecks, checkFirmwareSource)
}

// checkFirmwareSource is the recipe validator's hook for [firmware.source].
func checkFirmwareSource(r *Recipe) []error {
	s := r.Firmware.Source
	if s == nil {
		return nil
	}
	var errs []error
	if f := r.Firmware; f.Image != "" || f.Code != "" || f.Vars != "" {
		errs = append(errs, &RecipeError{Where: "firmware", Field: "source", Reason: "excludes image, code and vars (the built image is the firmware)"})
	}
	for i, p := range s.Patches {
		if in, ok := r.Inputs[p]; !ok || in.File == "" {
			errs = append(errs, &RecipeError{Where: "firmware", Field: fmt.Sprintf("source.patches[%d]", i),
				Reason: fmt.Sprintf("%q must name a file input (a patch in the recipe folder)", p)})
		}
	}
	if err := s.Validate(); err != nil {
		list := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			list = j.Unwrap()
		}
		for _, e := range list {
			errs = append(errs, &RecipeError{Reason: e.Error()})
		}
	}
	return errs
}

// Validate checks a [firmware.source] table without touching the file
// system. It reports every problem found, each naming its field.
func (s *FirmwareSource) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("firmware.source.%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if !debPackageRE.MatchString(s.Package) {
		bad("package", "%q is not a Debian source package name", s.Package)
	}
	if !debVersionRE.MatchString(s.Version) {
		bad("version", "%q is not a Debian version", s.Version)
	}
	errs = append(errs, s.validateFiles()...)
	if !platformRE.MatchString(s.Platform) || path.Clean(s.Platform) != s.Platform || slices.Contains(strings.Split(s.Platform, "/"), "..") {
		bad("platform", "%q is not a clean relative path to a .dsc file", s.Platform)
	}
	oneOf := func(field, v string, allowed []string) {
		if !slices.Contains(allowed, v) {
			bad(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
		}
	}
	oneOf("arch", s.Arch, firmwareArches)
	oneOf("build_type", s.BuildType, firmwareBuildTypes)
	oneOf("toolchain", s.Toolchain, firmwareToolchains)
	for i, d := range s.Defines {
		if !defineRE.MatchString(d) {
			bad(fmt.Sprintf("defines[%d]", i), "%q is not NAME or NAME=VALUE", d)
		}
	}
	if !fileNameRE.MatchString(s.Output) || !strings.HasSuffix(s.Output, ".fd") {
		bad("output", "%q is not a .fd file name", s.Output)
	}
	if s.OutputSHA256 != "" && !sha256RE.MatchString(s.OutputSHA256) {
		bad("output_sha256", "%q is not 64 lowercase hex digits", s.OutputSHA256)
	}
	for i, p := range s.Patches {
		if !patchInputRE.MatchString(p) {
			bad(fmt.Sprintf("patches[%d]", i), "%q is not an input name", p)
		}
	}
	errs = append(errs, s.validateTools()...)
	for i, m := range s.GrubModules {
		if !grubModuleRE.MatchString(m) {
			bad(fmt.Sprintf("grub_modules[%d]", i), "%q is not a GRUB module name", m)
		}
	}
	return errors.Join(errs...)
}

func (s *FirmwareSource) validateFiles() []error {
	var errs []error
	seen := map[string]bool{}
	dscs := 0
	for i, f := range s.Files {
		field := fmt.Sprintf("firmware.source.file[%d]", i)
		switch {
		case !fileNameRE.MatchString(f.Name):
			errs = append(errs, fmt.Errorf("%s.name: %q is not a plain file name", field, f.Name))
		case seen[f.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q listed twice", field, f.Name))
		}
		seen[f.Name] = true
		if strings.HasSuffix(f.Name, ".dsc") {
			dscs++
		}
		if !sha256RE.MatchString(f.SHA256) {
			errs = append(errs, fmt.Errorf("%s.sha256: %q is not 64 lowercase hex digits", field, f.SHA256))
		}
		if f.Size <= 0 {
			errs = append(errs, fmt.Errorf("%s.size: %d must be positive", field, f.Size))
		}
	}
	if want := s.dscName(); dscs != 1 || !seen[want] {
		errs = append(errs, fmt.Errorf("firmware.source.file: want exactly one .dsc, named %q", want))
	}
	return errs
}

func (s *FirmwareSource) validateTools() []error {
	var errs []error
	seen := map[string]bool{}
	for i, t := range s.Tools {
		field := fmt.Sprintf("firmware.source.tool[%d]", i)
		if !debPackageRE.MatchString(t.Package) {
			errs = append(errs, fmt.Errorf("%s.package: %q is not a Debian package name", field, t.Package))
		} else if seen[t.Package] {
			errs = append(errs, fmt.Errorf("%s.package: %q pinned twice", field, t.Package))
		}
		seen[t.Package] = true
		if !debVersionRE.MatchString(t.Version) {
			errs = append(errs, fmt.Errorf("%s.version: %q is not a Debian version", field, t.Version))
		}
	}
	need := requiredTools
	if len(s.GrubModules) > 0 {
		need = append(slices.Clone(need), grubTools...)
	}
	for _, p := range need {
		if !seen[p] {
			errs = append(errs, fmt.Errorf("firmware.source.tool: toolchain package %q is not pinned", p))
		}
	}
	return errs
}

// dscName is the file name of the source package's .dsc (the epoch, if
// any, is not part of Debian file names).
func (s *FirmwareSource) dscName() string {
	v := s.Version
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	return s.Package + "_" + v + ".dsc"
}

// ParseFirmwareSource reads the [firmware.source] table of a TOML file. The
// file is either a complete recipe (parsed and validated with ParseRecipe)
// or holds nothing but that table, as builder/testdata/firmware/*.toml do.
func ParseFirmwareSource(b []byte) (*FirmwareSource, error) {
	var only struct {
		Firmware struct {
			Source *FirmwareSource `toml:"source"`
		} `toml:"firmware"`
	}
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&only)
	if err != nil {
		return nil, fmt.Errorf("parsing firmware source: %w", err)
	}
	if len(md.Undecoded()) > 0 {
		r, err := ParseRecipe(b)
		if err != nil {
			return nil, err
		}
		if r.Firmware.Source == nil {
			return nil, errors.New("recipe has no [firmware.source] table")
		}
		return r.Firmware.Source, nil
	}
	if only.Firmware.Source == nil {
		return nil, errors.New("no [firmware.source] table")
	}
	if err := only.Firmware.Source.Validate(); err != nil {
		return nil, err
	}
	return only.Firmware.Source, nil
}
