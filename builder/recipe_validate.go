package builder

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	nameRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	hexSHA256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)
	modeRE      = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	hexRE       = regexp.MustCompile(`^0x[0-9a-fA-F]{1,16}$`)
	versionRE   = regexp.MustCompile(`^[0-9]+(\.[0-9]+){0,3}$`)
	machineRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	vcpuTypeRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	debNameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	debVerRE    = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	goPackageRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]*(/[A-Za-z0-9._~-]+)+$`)
	digestRefRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.:_/-]*@sha256:[0-9a-f]{64}$`)
	layerRE     = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	envRE       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)
)

// Enumerations accepted by the recipe validator.
var (
	ShapePlatforms = []string{"sev", "seves", "snp", "tdx", "tpm"}
	VMMs           = []string{"ec2", "gce", "qemu"}
	PageOrders     = []string{"single", "two-pass"}
	Compressors    = []string{"gzip", "none", "zstd"}
)

// Hooks for recipe sections validated in other files of this package.
var (
	// firmwareElsewhere reports whether r provides its firmware by other
	// means than image/code inputs (e.g. built from source).
	firmwareElsewhere func(r *Recipe) bool
	// recipeChecks validate additional sections; each returns its problems.
	recipeChecks []func(r *Recipe) []error
)

// validator collects every problem of a recipe.
type validator struct{ errs []error }

func (v *validator) bad(where, field, format string, args ...any) {
	v.errs = append(v.errs, &RecipeError{Where: where, Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Validate checks every field of r and reports all problems at once.
func (r *Recipe) Validate() error {
	v := &validator{}
	if !nameRE.MatchString(r.Name) {
		v.bad("", "name", "must match %s, got %q", nameRE, r.Name)
	}
	if r.Epoch < 0 {
		v.bad("", "epoch", "must not be negative, got %d", r.Epoch)
	}
	checkCmdline(v, r.Cmdline)
	for _, name := range slices.Sorted(maps.Keys(r.Inputs)) {
		checkInput(v, name, r.Inputs[name])
	}
	r.checkRefs(v)
	checkInitrd(v, &r.Initrd, r.Inputs)
	seen := map[string]bool{}
	for i, s := range r.Shapes {
		where := fmt.Sprintf("shape[%d]", i)
		if s.Name != "" {
			where = fmt.Sprintf("shape %q", s.Name)
		}
		if seen[s.Name] {
			v.bad(where, "name", "duplicate shape name")
		}
		seen[s.Name] = true
		checkShape(v, where, s, r.Inputs)
	}
	for _, c := range recipeChecks {
		v.errs = append(v.errs, c(r)...)
	}
	return errors.Join(v.errs...)
}

func checkCmdline(v *validator, c string) {
	if len(c) > 4096 {
		v.bad("", "cmdline", "%d bytes exceeds the limit of 4096", len(c))
	}
	for i, ch := range []byte(c) {
		if ch < 0x20 || ch == 0x7f {
			v.bad("", "cmdline", "control character 0x%02x at byte %d", ch, i)
			return
		}
	}
}

func checkInput(v *validator, name string, in Input) {
	where := fmt.Sprintf("input %q", name)
	if !nameRE.MatchString(name) {
		v.bad(where, "name", "must match %s", nameRE)
	}
	if !hexSHA256RE.MatchString(in.SHA256) {
		v.bad(where, "sha256", "must be 64 lowercase hex digits, got %q", in.SHA256)
	}
	if in.Size <= 0 {
		v.bad(where, "size", "must be a positive byte count, got %d", in.Size)
	}
	var sources []string
	for _, s := range []struct{ key, val string }{{"file", in.File}, {"url", in.URL}, {"deb", in.Deb}, {"oci", in.OCI}} {
		if s.val != "" {
			sources = append(sources, s.key)
		}
	}
	if len(sources) != 1 {
		v.bad(where, "source", "exactly one of file, url, deb, oci must be set, got %d %v", len(sources), sources)
		return
	}
	switch sources[0] {
	case "file":
		checkRelPath(v, where, "file", in.File)
	case "url":
		checkHTTPS(v, where, "url", in.URL)
	case "deb":
		if strings.Contains(in.Deb, "://") {
			checkHTTPS(v, where, "deb", in.Deb)
		} else {
			checkRelPath(v, where, "deb", in.Deb)
		}
		if in.Path == "" {
			v.bad(where, "path", "required with deb: the member path inside the package")
		} else {
			checkRelPath(v, where, "path", strings.TrimPrefix(in.Path, "./"))
		}
	case "oci":
		if !digestRefRE.MatchString(in.OCI) {
			v.bad(where, "oci", "must be a reference pinned by digest (registry/repo@sha256:<64 hex>), got %q", in.OCI)
		}
		if (in.Path == "") == (in.Layer == "") {
			v.bad(where, "path", "exactly one of path (file in the image) and layer (layer digest) is required with oci")
		}
		if in.Path != "" {
			checkRelPath(v, where, "path", in.Path)
		}
		if in.Layer != "" && !layerRE.MatchString(in.Layer) {
			v.bad(where, "layer", "must be sha256:<64 lowercase hex>, got %q", in.Layer)
		}
	}
	if sources[0] != "deb" && sources[0] != "oci" && in.Path != "" {
		v.bad(where, "path", "only valid with deb or oci")
	}
	if sources[0] != "oci" && in.Layer != "" {
		v.bad(where, "layer", "only valid with oci")
	}
	checkDebPin(v, where, in, sources[0])
}

func checkDebPin(v *validator, where string, in Input, source string) {
	if in.Package == "" && in.Version == "" {
		return
	}
	if source != "deb" {
		v.bad(where, "package", "only valid with deb")
		return
	}
	if !debNameRE.MatchString(in.Package) {
		v.bad(where, "package", "must be a Debian package name, got %q", in.Package)
	}
	if !debVerRE.MatchString(in.Version) {
		v.bad(where, "version", "must be a Debian version, got %q", in.Version)
	}
}

// checkRelPath rejects absolute, unclean and escaping paths.
func checkRelPath(v *validator, where, field, p string) {
	switch {
	case p == "":
		v.bad(where, field, "must not be empty")
	case strings.HasPrefix(p, "/") || strings.Contains(p, `\`):
		v.bad(where, field, "must be a relative /-separated path, got %q", p)
	case p != path.Clean(p):
		v.bad(where, field, "must be a clean path (%q), got %q", path.Clean(p), p)
	case p == ".." || strings.HasPrefix(p, "../"):
		v.bad(where, field, "%q escapes the recipe folder", p)
	}
}

func checkHTTPS(v *validator, where, field, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		v.bad(where, field, "must be an https URL, got %q", s)
	}
}

func (r *Recipe) checkRefs(v *validator) {
	ref := func(where, field, name string, required bool) {
		if name == "" {
			if required {
				v.bad(where, field, "required")
			}
			return
		}
		if _, ok := r.Inputs[name]; !ok {
			v.bad(where, field, "names no input: %q", name)
		}
	}
	f := r.Firmware
	ref("firmware", "image", f.Image, false)
	ref("firmware", "code", f.Code, false)
	ref("firmware", "vars", f.Vars, false)
	if f.Image == "" && f.Code == "" && (firmwareElsewhere == nil || !firmwareElsewhere(r)) {
		v.bad("firmware", "image", "one of image (combined flash image) or code+vars is required")
	}
	if (f.Code == "") != (f.Vars == "") {
		v.bad("firmware", "vars", "code and vars go together")
	}
	ref("", "kernel", r.Kernel, true)
}

func checkInitrd(v *validator, in *InitrdSpec, inputs map[string]Input) {
	if !slices.Contains(Compressors, in.Compression) {
		v.bad("initrd", "compression", "must be one of %v, got %q", Compressors, in.Compression)
	}
	if in.Init != "" && !goPackageRE.MatchString(in.Init) {
		v.bad("initrd", "init", "must be a Go package path, got %q", in.Init)
	}
	bins := map[string]bool{}
	for i, c := range in.Commands {
		field := fmt.Sprintf("commands[%d]", i)
		if !goPackageRE.MatchString(c) {
			v.bad("initrd", field, "must be a Go package path, got %q", c)
			continue
		}
		if bins[path.Base(c)] {
			v.bad("initrd", field, "a second command named %q", path.Base(c))
		}
		bins[path.Base(c)] = true
	}
	paths := map[string]bool{"init": true}
	for b := range bins {
		paths["bin/"+b] = true
	}
	for i, f := range in.Files {
		checkInitrdFile(v, fmt.Sprintf("initrd.file[%d]", i), f, inputs, paths)
	}
	if w := in.Workload; w != nil {
		if !digestRefRE.MatchString(w.Image) {
			v.bad("initrd.workload", "image", "must be a reference pinned by digest (registry/repo@sha256:<64 hex>), got %q", w.Image)
		}
		for i, e := range w.Env {
			if !envRE.MatchString(e) {
				v.bad("initrd.workload", fmt.Sprintf("env[%d]", i), "must be NAME=value, got %q", e)
			}
		}
	}
}

func checkInitrdFile(v *validator, where string, f InitrdFile, inputs map[string]Input, paths map[string]bool) {
	checkRelPath(v, where, "path", f.Path)
	if paths[f.Path] {
		v.bad(where, "path", "%q is already in the initrd", f.Path)
	}
	paths[f.Path] = true
	switch {
	case f.Input != "" && f.Contents != "":
		v.bad(where, "input", "exactly one of input and contents, got both")
	case f.Input != "":
		if _, ok := inputs[f.Input]; !ok {
			v.bad(where, "input", "names no input: %q", f.Input)
		}
	}
	if !modeRE.MatchString(f.Mode) {
		v.bad(where, "mode", "must be an octal permission such as \"0644\", got %q", f.Mode)
	}
}

// FileMode returns the permission bits of an initrd file's octal mode.
func (f InitrdFile) FileMode() uint32 {
	m, _ := strconv.ParseUint(f.Mode, 8, 32)
	return uint32(m)
}

func checkShape(v *validator, where string, s Shape, inputs map[string]Input) {
	if !nameRE.MatchString(s.Name) {
		v.bad(where, "name", "must match %s, got %q", nameRE, s.Name)
	}
	if !slices.Contains(ShapePlatforms, s.Platform) {
		v.bad(where, "platform", "must be one of %v, got %q", ShapePlatforms, s.Platform)
	}
	if s.VCPUs < 1 || s.VCPUs > 512 {
		v.bad(where, "vcpus", "must be 1..512, got %d", s.VCPUs)
	}
	if s.VCPUType != "" && s.VCPUSig != "" {
		v.bad(where, "vcpu_sig", "give vcpu_type or vcpu_sig, not both")
	}
	if s.VCPUType != "" && !vcpuTypeRE.MatchString(s.VCPUType) {
		v.bad(where, "vcpu_type", "must match %s, got %q", vcpuTypeRE, s.VCPUType)
	}
	checkHex(v, where, "vcpu_sig", s.VCPUSig)
	checkHex(v, where, "guest_features", s.GuestFeatures)
	checkHex(v, where, "policy", s.Policy)
	if s.VMM != "" && !slices.Contains(VMMs, s.VMM) {
		v.bad(where, "vmm", "must be one of %v, got %q", VMMs, s.VMM)
	}
	if s.VMMVersion != "" && !versionRE.MatchString(s.VMMVersion) {
		v.bad(where, "vmm_version", "must be a dotted version such as \"7.2\", got %q", s.VMMVersion)
	}
	if s.Machine != "" && !machineRE.MatchString(s.Machine) {
		v.bad(where, "machine", "must match %s, got %q", machineRE, s.Machine)
	}
	if s.MemoryMiB < 0 || s.MemoryMiB > 1<<22 {
		v.bad(where, "memory_mib", "must be 0 (unspecified) or 1..%d, got %d", 1<<22, s.MemoryMiB)
	}
	if s.PageOrder != "" {
		if s.Platform != "tdx" {
			v.bad(where, "page_order", "only valid for platform tdx")
		} else if !slices.Contains(PageOrders, s.PageOrder) {
			v.bad(where, "page_order", "must be one of %v, got %q", PageOrders, s.PageOrder)
		}
	}
	if s.Profile != "" {
		if _, ok := inputs[s.Profile]; !ok {
			v.bad(where, "profile", "names no input: %q", s.Profile)
		}
	}
}

func checkHex(v *validator, where, field, s string) {
	if s != "" && !hexRE.MatchString(s) {
		v.bad(where, field, "must be 0x-prefixed hex of at most 64 bits, got %q", s)
	}
}
