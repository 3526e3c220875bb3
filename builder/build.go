package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/mkcvm/mkcvm/initrd"
	"github.com/mkcvm/mkcvm/manifest"
)

// BuildOptions control Build. The zero value builds nothing useful: set
// Out (unless DryRun), RecipeText and ModuleDir.
type BuildOptions struct {
	// Out is the output directory. It is written atomically: a failed
	// build leaves no directory. An existing earlier build output (a
	// directory holding manifest.json) or an empty directory is replaced.
	Out string
	// RecipeText is the recipe file verbatim (its sha256 and text go into
	// the manifest).
	RecipeText []byte
	// ModuleDir is the Go module the initrd programs are built in.
	ModuleDir string
	// GoCommand is the go binary ("" = go from PATH).
	GoCommand string
	// Cache stores inputs and compiled binaries; nil disables caching.
	Cache    *Cache
	Offline  bool
	Fetcher  Fetcher
	Progress Progress
	Logger   *slog.Logger // nil discards
	// DryRun does everything but write Out.
	DryRun bool
	// RecipeDir and DebDirs locate recipe-relative files and .deb folders
	// for hooks (e.g. firmware built from a source package).
	RecipeDir string
	DebDirs   []string
	// Sign, when set, signs the canonical manifest.json bytes; its result
	// is written as SignatureFile inside the same atomic output, so a
	// failed signature leaves no directory either.
	Sign func(manifestJSON []byte) ([]byte, error)
}

// BuildResult describes a finished build.
type BuildResult struct {
	Dir      string
	Manifest *manifest.Manifest
	// ManifestJSON is the exact manifest.json content.
	ManifestJSON []byte
}

// Artifact names inside the output directory.
const (
	ManifestFile = "manifest.json"
	// SignatureFile holds the Sigstore bundle of a signed build.
	SignatureFile = "manifest.sigstore.json"
	CmdlineFile   = "cmdline"
	KernelFile    = "vmlinuz"
)

// ExtraArtifact is an additional output file produced by a hook.
type ExtraArtifact struct {
	Name, Role string
	Data       []byte
}

// Hooks registered by other files of this package.
var (
	// initrdHooks add records to the initramfs (e.g. the runner's config).
	initrdHooks []func(r *Recipe, inputs map[string][]byte) ([]initrd.Record, error)
	// artifactHooks add output files (e.g. a disk image or a UKI) once the
	// firmware, kernel, initrd and command line are assembled.
	artifactHooks []func(ctx context.Context, r *Recipe, in *MeasureInputs) ([]ExtraArtifact, error)
)

type artifact struct {
	name, role string
	data       []byte
}

// Build fetches and verifies the inputs of r, builds the initrd,
// assembles the bundle, computes every shape's reference values and writes
// the bundle with its manifest.json to o.Out.
func Build(ctx context.Context, r *Recipe, o BuildOptions) (*BuildResult, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inputs, _, err := Resolve(ctx, r, ResolveOptions{Cache: o.Cache, Offline: o.Offline, Fetcher: o.Fetcher, Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	rd, gb, err := buildInitrd(ctx, r, inputs, o, log)
	if err != nil {
		return nil, err
	}
	mi := &MeasureInputs{
		Firmware: inputs[r.Firmware.Image], FirmwareCode: inputs[r.Firmware.Code], FirmwareVars: inputs[r.Firmware.Vars],
		Kernel: inputs[r.Kernel], Initrd: rd, Cmdline: r.Cmdline, Inputs: inputs, Workload: r.Initrd.Workload,
	}
	arts := bundleArtifacts(r, mi)
	for _, h := range artifactHooks {
		extra, err := h(ctx, r, mi)
		if err != nil {
			return nil, err
		}
		for _, e := range extra {
			arts = append(arts, artifact{e.Name, e.Role, e.Data})
		}
	}
	m, err := newManifest(r, o.RecipeText, arts, gb)
	if err != nil {
		return nil, err
	}
	for _, s := range r.Shapes {
		t := start(o.Progress, "measure "+s.Name, 0)
		ms, err := ComputeShape(mi, s)
		t.Done(err)
		if err != nil {
			return nil, err
		}
		m.Shapes = append(m.Shapes, ms)
	}
	enc, err := manifest.Encode(m)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	res := &BuildResult{Dir: o.Out, Manifest: m, ManifestJSON: enc}
	if o.DryRun {
		return res, nil
	}
	arts = append(arts, artifact{ManifestFile, "manifest", enc})
	if o.Sign != nil {
		sig, err := o.Sign(enc)
		if err != nil {
			return nil, fmt.Errorf("signing %s: %w", ManifestFile, err)
		}
		arts = append(arts, artifact{SignatureFile, "signature", sig})
	}
	if err := writeOutput(o.Out, arts); err != nil {
		return nil, fmt.Errorf("writing %s: %w", o.Out, err)
	}
	log.Info("build written", "dir", o.Out)
	return res, nil
}

// InitrdName is the output name of the initrd for a compression.
func InitrdName(compression string) string {
	switch compression {
	case initrd.Gzip:
		return "initrd.cpio.gz"
	case initrd.Zstd:
		return "initrd.cpio.zst"
	}
	return "initrd.cpio"
}

func bundleArtifacts(r *Recipe, mi *MeasureInputs) []artifact {
	var arts []artifact
	if r.Firmware.Image != "" {
		arts = append(arts, artifact{"OVMF.fd", "firmware", mi.Firmware})
	}
	if r.Firmware.Code != "" {
		arts = append(arts, artifact{"OVMF_CODE.fd", "firmware-code", mi.FirmwareCode},
			artifact{"OVMF_VARS.fd", "firmware-vars", mi.FirmwareVars})
	}
	arts = append(arts,
		artifact{KernelFile, "kernel", mi.Kernel},
		artifact{InitrdName(r.Initrd.Compression), "initrd", mi.Initrd},
		artifact{CmdlineFile, "cmdline", []byte(r.Cmdline)})
	// Captured platform profiles are inputs of reference values: ship them
	// so that `mkcvm reproduce` recomputes every value from the bundle.
	seen := map[string]bool{}
	for _, s := range r.Shapes {
		if s.Profile == "" || seen[s.Profile] {
			continue
		}
		seen[s.Profile] = true
		arts = append(arts, artifact{s.Profile + ".profile.json", "profile", mi.Inputs[s.Profile]})
	}
	return arts
}

// InitrdRecords returns the records of the initramfs of r (without the
// compiled programs): the base directories and /dev/console, the recipe's
// extra files and hook records.
func InitrdRecords(r *Recipe, inputs map[string][]byte) ([]initrd.Record, error) {
	recs := []initrd.Record{
		initrd.Dir("dev", 0o755), initrd.CharDev("dev/console", 0o600, 5, 1),
		initrd.Dir("proc", 0o555), initrd.Dir("sys", 0o555), initrd.Dir("tmp", 0o1777),
	}
	for _, f := range r.Initrd.Files {
		data := []byte(f.Contents)
		if f.Input != "" {
			data = inputs[f.Input]
		}
		recs = append(recs, initrd.File(f.Path, f.FileMode(), data))
	}
	for _, h := range initrdHooks {
		extra, err := h(r, inputs)
		if err != nil {
			return nil, err
		}
		recs = append(recs, extra...)
	}
	return recs, nil
}

func buildInitrd(ctx context.Context, r *Recipe, inputs map[string][]byte, o BuildOptions, log *slog.Logger) ([]byte, *initrd.GoBuildResult, error) {
	g := initrd.GoBuild{Go: o.GoCommand, ModuleDir: o.ModuleDir, Init: r.Initrd.Init, Commands: r.Initrd.Commands, Offline: o.Offline, Logger: log}
	if g.Init == "" {
		g.Init = DefaultInit
	}
	if o.Cache != nil {
		g.CacheDir = o.Cache.Dir
	}
	t := start(o.Progress, "compile initrd programs", 0)
	gb, err := g.Build(ctx)
	t.Done(err)
	if err != nil {
		return nil, nil, fmt.Errorf("initrd: %w", err)
	}
	recs, err := InitrdRecords(r, inputs)
	if err != nil {
		return nil, nil, fmt.Errorf("initrd: %w", err)
	}
	for _, b := range gb.Binaries {
		recs = append(recs, initrd.File(b.Path, 0o755, b.Data))
	}
	raw, err := initrd.Marshal(r.Epoch, recs)
	if err != nil {
		return nil, nil, fmt.Errorf("initrd: %w", err)
	}
	t = start(o.Progress, "compress initrd ("+r.Initrd.Compression+")", 0)
	z, err := initrd.Compress(r.Initrd.Compression, raw)
	t.Done(err)
	if err != nil {
		return nil, nil, fmt.Errorf("initrd: %w", err)
	}
	// Re-read what we wrote: the archive must hold exactly the records.
	if err := initrd.Check(InitrdName(r.Initrd.Compression), z, r.Epoch, recs); err != nil {
		return nil, nil, fmt.Errorf("initrd self-check: %w", err)
	}
	return z, gb, nil
}

func hexSum(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }

func newManifest(r *Recipe, text []byte, arts []artifact, gb *initrd.GoBuildResult) (*manifest.Manifest, error) {
	m := &manifest.Manifest{
		Schema:    manifest.SchemaVersion,
		Recipe:    manifest.Recipe{Name: r.Name, SHA256: hexSum(text), Text: string(text)},
		Epoch:     r.Epoch,
		Inputs:    manifestInputs(r),
		Cmdline:   r.Cmdline,
		Validity:  manifest.NewValidity(r.Epoch, 0),
		Toolchain: manifest.Toolchain{Go: gb.GoVersion},
	}
	m.Toolchain.Env = append(slices.Clone(gb.Env),
		"MKCVM_GO_BUILD_FLAGS="+strings.Join(gb.Flags, " "),
		"MKCVM_INITRD_COMPRESSION="+initrd.CompressionID(r.Initrd.Compression))
	mods, err := toolchainModules(gb)
	if err != nil {
		return nil, err
	}
	m.Toolchain.Modules = mods
	for _, a := range arts {
		m.Artifacts = append(m.Artifacts, manifest.Artifact{Name: a.name, Role: a.role, SHA256: hexSum(a.data), Size: int64(len(a.data))})
	}
	slices.SortFunc(m.Artifacts, func(a, b manifest.Artifact) int { return strings.Compare(a.Name, b.Name) })
	return m, nil
}

// toolchainModules lists the modules compiled into the initrd programs
// and into this mkcvm (which wrote the cpio and compressed it), sorted.
func toolchainModules(gb *initrd.GoBuildResult) ([]manifest.Module, error) {
	mods, err := gb.Modules()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []manifest.Module
	add := func(p, v, s string) {
		if p == "" || seen[p+"@"+v] {
			return
		}
		seen[p+"@"+v] = true
		out = append(out, manifest.Module{Path: p, Version: v, Sum: s})
	}
	for _, m := range mods {
		add(m[0], m[1], m[2])
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			add(d.Path, d.Version, d.Sum)
		}
	}
	slices.SortFunc(out, func(a, b manifest.Module) int {
		return strings.Compare(a.Path+" "+a.Version, b.Path+" "+b.Version)
	})
	return out, nil
}

// ErrOutputExists means the output directory exists and is not an earlier
// build output.
var ErrOutputExists = errors.New("output directory exists and is not an mkcvm build")

// writeOutput writes the artifacts into a temporary directory next to dir
// and renames it into place.
func writeOutput(dir string, arts []artifact) (err error) {
	if dir == "" {
		return errors.New("no output directory")
	}
	dir = filepath.Clean(dir)
	if err := checkReplaceable(dir); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	for _, a := range arts {
		p := filepath.Join(tmp, a.name)
		if err := os.WriteFile(p, a.data, 0o644); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	old := ""
	if _, err := os.Lstat(dir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(dir, old); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		if old != "" {
			os.Rename(old, dir)
		}
		return err
	}
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

func checkReplaceable(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrOutputExists, dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
		return fmt.Errorf("%w: %s (no %s)", ErrOutputExists, dir, ManifestFile)
	}
	return nil
}
