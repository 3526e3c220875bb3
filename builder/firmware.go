package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// FirmwareBuildSchema versions the firmware build procedure (unpacking,
// patching, grub.efi, environment, build command). It is part of the cache
// key: changing the procedure invalidates every cached build.
const FirmwareBuildSchema = "mkcvm.dev/firmware-build/v1"

// DefaultFirmwareBuildRoot is the fixed directory every firmware build
// runs in. edk2 writes absolute source paths into intermediate files and
// the compiler into DWARF; a fixed path keeps any such leak identical
// across hosts (see docs/firmware.md).
const DefaultFirmwareBuildRoot = "/tmp/mkcvm-edk2-build"

// FirmwareOptions configures BuildFirmware. The zero value of each field is
// documented; none of them changes the firmware bytes.
type FirmwareOptions struct {
	// SourceDir holds the pinned source package files (required).
	SourceDir string
	// Patches holds the contents of the recipe inputs named in
	// FirmwareSource.Patches, already verified against their pins.
	Patches map[string][]byte
	// CacheDir receives built firmware, one directory per cache key
	// (required).
	CacheDir string
	// BuildRoot is the scratch tree, wiped before each build; empty means
	// DefaultFirmwareBuildRoot. Builds sharing a BuildRoot take turns.
	BuildRoot string
	// Jobs is the number of parallel compile jobs; 0 means runtime.NumCPU().
	Jobs int
	// Nice, when non-zero, runs the compilers under nice -n Nice.
	Nice int
	// KeepBuildRoot keeps the scratch tree after a successful build.
	KeepBuildRoot bool
	// Log receives the compiler output; nil discards it (a copy is always
	// kept in BuildRoot/build.log).
	Log io.Writer
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// Packages checks the toolchain; nil means DpkgQuerier.
	Packages PackageQuerier
}

// FirmwareBuild is the provenance of one built firmware image, stored next
// to it in the cache as build.json and suitable for manifest.json.
type FirmwareBuild struct {
	Schema string         `json:"schema"`
	Key    string         `json:"key"`
	Source FirmwareSource `json:"source"`
	// Patches are the debian/patches/series entries applied, in order,
	// then the recipe's extra patches.
	Patches []string `json:"patches"`
	// GrubEFISHA256 is the sha256 of the generated grub.efi (AmdSevX64).
	GrubEFISHA256 string `json:"grub_efi_sha256,omitempty"`
	// Env is the complete environment of the build commands.
	Env []string `json:"env"`
	// Command is the edk2 build command line.
	Command []string `json:"command"`
	// Output is the firmware image.
	Output FirmwareArtifact `json:"output"`
}

// FirmwareArtifact names a built file by digest.
type FirmwareArtifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// FirmwareResult is the outcome of BuildFirmware.
type FirmwareResult struct {
	Path   string // the firmware image inside CacheDir
	Build  FirmwareBuild
	Cached bool // true when a previous build was reused
}

// FirmwareKey is the cache key of a firmware build: the sha256 of the build
// schema and the canonical JSON of every input (source digests, platform,
// flags, toolchain versions, grub modules) and the sha256 of each extra
// patch, in order.
func FirmwareKey(s *FirmwareSource, patches map[string][]byte) (string, error) {
	var sums []string
	for _, p := range s.Patches {
		b, ok := patches[p]
		if !ok {
			return "", fmt.Errorf("firmware.source.patches: input %q not provided", p)
		}
		sum := sha256.Sum256(b)
		sums = append(sums, hex.EncodeToString(sum[:]))
	}
	in := *s
	in.OutputSHA256 = "" // a check on the result, not an input
	b, err := json.Marshal(struct {
		Schema  string          `json:"schema"`
		Source  *FirmwareSource `json:"source"`
		Patches []string        `json:"patch_sha256"`
	}{FirmwareBuildSchema, &in, sums})
	if err != nil {
		return "", fmt.Errorf("encoding firmware source: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// BuildFirmware builds (or finds in the cache) the firmware s describes.
// Before any compiler runs it validates s, checks the toolchain versions,
// verifies every source file against its pin, checks the .dsc against the
// recipe and makes sure the platform exists. Nothing is written to the
// cache unless the whole build succeeds.
func BuildFirmware(ctx context.Context, s *FirmwareSource, opts FirmwareOptions) (*FirmwareResult, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if opts.SourceDir == "" || opts.CacheDir == "" {
		return nil, errors.New("building firmware: SourceDir and CacheDir are required")
	}
	key, err := FirmwareKey(s, opts.Patches)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r, err := cachedFirmware(opts.CacheDir, key); err != nil || r != nil {
		if err != nil {
			return nil, err
		}
		if want := s.OutputSHA256; want != "" && want != r.Build.Output.SHA256 {
			return nil, fmt.Errorf("%w: cached %s is sha256 %s, recipe pins %s", ErrOutputDigest, r.Path, r.Build.Output.SHA256, want)
		}
		log.Info("firmware cache hit", "key", key, "sha256", r.Build.Output.SHA256)
		return r, nil
	}
	q := opts.Packages
	if q == nil {
		q = DpkgQuerier{}
	}
	if err := checkTools(ctx, q, s.Tools); err != nil {
		return nil, err
	}
	// Checked here without waiting for the build root lock, and again
	// under it, right before the files are used.
	if err := verifySources(opts.SourceDir, s.Files); err != nil {
		return nil, err
	}
	b := &fwBuild{src: s, opts: opts, key: key, log: log}
	return b.run(ctx)
}

// cachedFirmware returns the cached build for key, or nil when there is
// none. A cache entry whose image no longer matches its record is an error.
func cachedFirmware(cacheDir, key string) (*FirmwareResult, error) {
	dir := filepath.Join(cacheDir, key)
	rec, err := os.ReadFile(filepath.Join(dir, "build.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var fb FirmwareBuild
	if err := json.Unmarshal(rec, &fb); err != nil {
		return nil, fmt.Errorf("firmware cache %s: build.json: %w", dir, err)
	}
	if !fileNameRE.MatchString(fb.Output.Name) {
		return nil, fmt.Errorf("firmware cache %s: build.json: output name %q is not a plain file name", dir, fb.Output.Name)
	}
	p := filepath.Join(dir, fb.Output.Name)
	sum, size, err := fileSHA256(p)
	if err != nil {
		return nil, fmt.Errorf("firmware cache %s: %w", dir, err)
	}
	if sum != fb.Output.SHA256 || size != fb.Output.Size || fb.Key != key {
		return nil, fmt.Errorf("firmware cache %s: %s is sha256 %s size %d, build.json records %s size %d (remove the directory to rebuild)",
			dir, fb.Output.Name, sum, size, fb.Output.SHA256, fb.Output.Size)
	}
	return &FirmwareResult{Path: p, Build: fb, Cached: true}, nil
}

func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// fwBuild is one firmware build in progress.
type fwBuild struct {
	src  *FirmwareSource
	opts FirmwareOptions
	key  string
	log  *slog.Logger

	root, tree string // build root and the unpacked source tree in it
	env        []string
	logw       io.Writer
	info       FirmwareBuild
}

func (b *fwBuild) run(ctx context.Context) (_ *FirmwareResult, err error) {
	b.root = b.opts.BuildRoot
	if b.root == "" {
		b.root = DefaultFirmwareBuildRoot
	}
	unlock, err := lockBuildRoot(b.root)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := clearBuildRoot(b.root); err != nil {
		return nil, err
	}
	defer func() {
		if err == nil && !b.opts.KeepBuildRoot {
			err = os.RemoveAll(b.root)
		}
	}()
	if err := verifySources(b.opts.SourceDir, b.src.Files); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(b.root, "home"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(b.root, buildRootMarker), nil, 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(b.root, "build.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	b.logw = logf
	if b.opts.Log != nil {
		b.logw = io.MultiWriter(logf, b.opts.Log)
	}
	b.tree = filepath.Join(b.root, "edk2")
	b.env = firmwareEnv(b.root)
	b.info = FirmwareBuild{Schema: FirmwareBuildSchema, Key: b.key, Source: *b.src, Env: b.env}
	plat, err := b.prepare(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.compile(ctx); err != nil {
		return nil, fmt.Errorf("building %s (log: %s): %w", b.src.Platform, filepath.Join(b.root, "build.log"), err)
	}
	return b.store(plat)
}

// buildRootMarker marks a directory as an mkcvm build root, which
// clearBuildRoot may wipe.
const buildRootMarker = ".mkcvm-edk2-build-root"

// clearBuildRoot removes the scratch tree of an earlier build. It refuses
// to remove a relative path or a non-empty directory that is not marked as
// a build root, so a mistyped --build-root cannot wipe other files.
func clearBuildRoot(root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("build root %q: not an absolute path", root)
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("build root: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, buildRootMarker)); len(ents) > 0 && err != nil {
		return fmt.Errorf("build root %s: refusing to clear a non-empty directory without %s", root, buildRootMarker)
	}
	if err := os.RemoveAll(root); err != nil {
		return fmt.Errorf("clearing build root: %w", err)
	}
	return nil
}

// firmwareEnv is the complete environment of every build command: nothing
// is inherited from the caller (locale, TZ, umask-sensitive tools, PATH).
func firmwareEnv(root string) []string {
	return []string{
		"HOME=" + filepath.Join(root, "home"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"PYTHON3_ENABLE=TRUE",
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONHASHSEED=0",
		"SOURCE_DATE_EPOCH=0",
		"TZ=UTC",
	}
}

// prepare unpacks the source package, applies its patches, checks the
// platform and generates grub.efi. No compiler has run when it returns.
func (b *fwBuild) prepare(ctx context.Context) (*edk2Platform, error) {
	dscPath := filepath.Join(b.opts.SourceDir, b.src.dscName())
	raw, err := os.ReadFile(dscPath)
	if err != nil {
		return nil, err
	}
	dsc, err := ParseDSC(b.src.dscName(), raw)
	if err != nil {
		return nil, err
	}
	if err := checkDSC(b.src, dsc); err != nil {
		return nil, err
	}
	orig, deb, err := sourceTarballs(dsc)
	if err != nil {
		return nil, err
	}
	b.log.Info("unpacking", "orig", orig, "debian", deb, "tree", b.tree)
	if err := extractTarball(ctx, filepath.Join(b.opts.SourceDir, orig), b.tree, true); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(filepath.Join(b.tree, "debian")); err != nil { // 3.0 (quilt): debian/ replaces any upstream one
		return nil, err
	}
	if err := extractTarball(ctx, filepath.Join(b.opts.SourceDir, deb), b.tree, false); err != nil {
		return nil, err
	}
	if b.info.Patches, err = applyPatches(ctx, b.tree, b.env, b.logw); err != nil {
		return nil, err
	}
	for i, name := range b.src.Patches {
		p := filepath.Join(b.root, "patches", fmt.Sprintf("%02d-%s", i, name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, b.opts.Patches[name], 0o644); err != nil {
			return nil, err
		}
		if err := applyPatch(ctx, b.tree, b.env, b.logw, p, "1"); err != nil {
			return nil, fmt.Errorf("recipe patch input %q: %w", name, err)
		}
		b.info.Patches = append(b.info.Patches, "input:"+name)
	}
	plat, err := readPlatform(b.tree, b.src.Platform)
	if err != nil {
		return nil, err
	}
	switch {
	case plat.grubPrebuild != "" && len(b.src.GrubModules) == 0:
		return nil, fmt.Errorf("firmware.source.grub_modules: platform %s builds an embedded grub.efi (PREBUILD %s); list its modules", b.src.Platform, plat.grubPrebuild)
	case plat.grubPrebuild == "" && len(b.src.GrubModules) > 0:
		return nil, fmt.Errorf("firmware.source.grub_modules: platform %s embeds no grub.efi; remove the list", b.src.Platform)
	case plat.grubPrebuild != "":
		sum, err := b.makeGrub(ctx, path.Dir(plat.grubPrebuild))
		if err != nil {
			return nil, err
		}
		b.info.GrubEFISHA256 = sum
	}
	return plat, nil
}

// edk2Platform is what mkcvm reads from a platform .dsc's [Defines].
type edk2Platform struct {
	outputDir    string // OUTPUT_DIRECTORY, e.g. Build/AmdSev
	grubPrebuild string // the grub.sh PREBUILD runs, if any
}

var (
	dscOutputDirRE = regexp.MustCompile(`(?m)^\s*OUTPUT_DIRECTORY\s*=\s*(\S+)\s*$`)
	dscPrebuildRE  = regexp.MustCompile(`(?m)^\s*PREBUILD\s*=\s*(.*?)\s*$`)
)

// readPlatform checks that the platform exists in the unpacked tree and
// reads its output directory and PREBUILD step.
func readPlatform(tree, platform string) (*edk2Platform, error) {
	b, err := os.ReadFile(filepath.Join(tree, platform))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s (platforms under OvmfPkg: %s)", ErrPlatform, platform, strings.Join(listPlatforms(tree), ", "))
	}
	if err != nil {
		return nil, err
	}
	p := &edk2Platform{}
	m := dscOutputDirRE.FindSubmatch(b)
	if m == nil {
		return nil, fmt.Errorf("%s: no OUTPUT_DIRECTORY in [Defines]", platform)
	}
	p.outputDir = path.Clean(string(m[1]))
	if path.IsAbs(p.outputDir) || strings.HasPrefix(p.outputDir, "..") {
		return nil, fmt.Errorf("%s: OUTPUT_DIRECTORY %q leaves the tree", platform, p.outputDir)
	}
	if m := dscPrebuildRE.FindSubmatch(b); m != nil {
		f := strings.Fields(string(m[1]))
		if len(f) != 2 || f[0] != "sh" || path.Base(f[1]) != "grub.sh" {
			return nil, fmt.Errorf("%s: PREBUILD %q is not supported (only sh .../grub.sh)", platform, m[1])
		}
		p.grubPrebuild = path.Clean(f[1])
	}
	return p, nil
}

// listPlatforms names the .dsc files under OvmfPkg, for error messages.
func listPlatforms(tree string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(tree, "OvmfPkg"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".dsc") {
			if rel, err := filepath.Rel(tree, p); err == nil {
				out = append(out, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// buildCommand is the edk2 build invocation (after edksetup.sh), without
// the job count, which does not change the output.
func (b *fwBuild) buildCommand() []string {
	cmd := []string{"build", "-a", b.src.Arch, "-t", b.src.Toolchain, "-b", b.src.BuildType, "-p", b.src.Platform}
	for _, d := range b.src.Defines {
		cmd = append(cmd, "-D", d)
	}
	return cmd
}

// compileScript builds BaseTools and then the platform. $1 is the job
// count, the rest is the build command. edksetup.sh parses "$@", so the
// arguments are saved and cleared before sourcing it.
const compileScript = `set -e
umask 022
jobs=$1; shift
cmd=("$@"); set --
unset WORKSPACE EDK_TOOLS_PATH CONF_PATH PACKAGES_PATH
. ./edksetup.sh
make -C BaseTools -j"$jobs"
"${cmd[@]}"
`

func (b *fwBuild) compile(ctx context.Context) error {
	jobs := b.opts.Jobs
	if jobs <= 0 {
		jobs = runtime.NumCPU()
	}
	b.info.Command = b.buildCommand()
	args := append([]string{"bash", "-c", compileScript, "mkcvm-edk2", strconv.Itoa(jobs)}, b.info.Command...)
	args = append(args, "-n", strconv.Itoa(jobs))
	if b.opts.Nice != 0 {
		args = append([]string{"nice", "-n", strconv.Itoa(b.opts.Nice)}, args...)
	}
	b.log.Info("compiling", "platform", b.src.Platform, "jobs", jobs)
	cmd := buildCmd(ctx, b.tree, b.env, b.logw, args[0], args[1:]...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("edk2 build: %w%s", err, logTail(filepath.Join(b.root, "build.log")))
	}
	return nil
}

// logTail returns the last lines of the build log for an error message.
func logTail(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	lines = lines[max(0, len(lines)-15):]
	return "\n" + string(bytes.Join(lines, []byte("\n")))
}

// store copies the image into the cache: into a temporary directory first,
// renamed into place only when complete.
func (b *fwBuild) store(plat *edk2Platform) (*FirmwareResult, error) {
	out := filepath.Join(b.tree, filepath.FromSlash(plat.outputDir), b.src.BuildType+"_"+b.src.Toolchain, "FV", b.src.Output)
	img, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build output: %w", err)
	}
	sum := sha256.Sum256(img)
	b.info.Output = FirmwareArtifact{Name: b.src.Output, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(img))}
	if want := b.src.OutputSHA256; want != "" && want != b.info.Output.SHA256 {
		return nil, fmt.Errorf("%w: %s is sha256 %s, recipe pins %s (image left in %s)", ErrOutputDigest, b.src.Output, b.info.Output.SHA256, want, out)
	}
	rec, err := json.MarshalIndent(b.info, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.opts.CacheDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(b.opts.CacheDir, ".tmp-"+b.key[:12]+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	if err := os.WriteFile(filepath.Join(tmp, b.src.Output), img, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "build.json"), append(rec, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	dst := filepath.Join(b.opts.CacheDir, b.key)
	if err := os.Rename(tmp, dst); err != nil {
		return nil, fmt.Errorf("storing firmware in the cache: %w", err)
	}
	b.log.Info("firmware built", "sha256", b.info.Output.SHA256, "cache", dst)
	return &FirmwareResult{Path: filepath.Join(dst, b.src.Output), Build: b.info}, nil
}

// RecipeFirmware returns the firmware image of a recipe whose
// [firmware.source] table builds it: it runs BuildFirmware (a cache hit
// after the first time) and returns the image and its build record for
// manifest.json. inputs are the recipe's resolved inputs (the patches).
func RecipeFirmware(ctx context.Context, r *Recipe, inputs map[string][]byte, opts FirmwareOptions) ([]byte, *FirmwareBuild, error) {
	if r.Firmware.Source == nil {
		return nil, nil, errors.New("recipe has no [firmware.source] table")
	}
	opts.Patches = map[string][]byte{}
	for _, p := range r.Firmware.Source.Patches {
		b, ok := inputs[p]
		if !ok {
			return nil, nil, fmt.Errorf("firmware from source: patch input %q not resolved", p)
		}
		opts.Patches[p] = b
	}
	res, err := BuildFirmware(ctx, r.Firmware.Source, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("firmware from source: %w", err)
	}
	img, err := os.ReadFile(res.Path)
	if err != nil {
		return nil, nil, err
	}
	if sum := sha256.Sum256(img); hex.EncodeToString(sum[:]) != res.Build.Output.SHA256 {
		return nil, nil, fmt.Errorf("firmware from source: %s changed after it was verified", res.Path)
	}
	return img, &res.Build, nil
}
