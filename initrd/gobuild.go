package initrd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
)

// BuildEnv is the complete set of variables that affect the output of the
// Go builds of in-image binaries. It replaces whatever the host sets:
// GOFLAGS, GOEXPERIMENT, GOAMD64 and go.env settings never leak in.
var BuildEnv = []string{
	"CGO_ENABLED=0",
	"GOARCH=amd64",
	"GOAMD64=v1",
	"GOENV=off",
	"GOEXPERIMENT=",
	"GOFLAGS=-mod=readonly",
	"GOOS=linux",
	"GOTOOLCHAIN=local",
	"GOWORK=off",
}

// BuildFlags are the go build flags of in-image binaries.
var BuildFlags = []string{"-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid="}

// hostVars are taken from the host's go env: they locate caches and
// module sources but do not change what is built.
var hostVars = []string{"GOCACHE", "GOMODCACHE", "GOPATH", "GOPROXY", "GOSUMDB", "GONOSUMDB", "GOPRIVATE", "GONOPROXY", "GOINSECURE", "GOROOT"}

// GoBuild describes a build of Go main packages for the initramfs.
type GoBuild struct {
	Go        string   // go command; "" means "go" from PATH
	ModuleDir string   // directory of the go.mod the packages resolve in
	CacheDir  string   // compiled-binary cache; "" disables caching
	Init      string   // package built as /init
	Commands  []string // packages built as /bin/<base>
	// Offline forbids module downloads (GOPROXY=off): everything must
	// already be in the module cache.
	Offline bool
	Logger  *slog.Logger
}

// GoBinary is one compiled program and where it goes in the image.
type GoBinary struct {
	Package string
	Path    string // path in the initramfs
	Data    []byte
}

// GoBuildResult is the outcome of a GoBuild.
type GoBuildResult struct {
	Binaries  []GoBinary // in the order Init, Commands...
	GoVersion string     // e.g. go1.26.8
	Env       []string   // BuildEnv
	Flags     []string   // BuildFlags
	Key       string     // cache key (sha256 of every build input)
	Cached    bool
}

// Modules returns the modules compiled into the binaries (from their
// embedded build info) as path, version, sum; sorted, without duplicates.
// Replaced modules are listed as their replacement.
func (r *GoBuildResult) Modules() ([][3]string, error) {
	seen := map[string][3]string{}
	for _, b := range r.Binaries {
		bi, err := buildinfo.Read(bytes.NewReader(b.Data))
		if err != nil {
			return nil, fmt.Errorf("%s: reading build info: %w", b.Package, err)
		}
		mods := append([]*debug.Module{&bi.Main}, bi.Deps...)
		for _, d := range mods {
			if d.Replace != nil {
				d = d.Replace
			}
			seen[d.Path+"@"+d.Version] = [3]string{d.Path, d.Version, d.Sum}
		}
	}
	var out [][3]string
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, seen[k])
	}
	return out, nil
}

// ErrGoBuild wraps failures of the go command.
var ErrGoBuild = errors.New("go build failed")

// Build compiles the packages with the pinned environment, or returns the
// cached binaries when every input is unchanged. The cache key covers the
// Go version, BuildEnv, BuildFlags, the package list, go.mod, go.sum and
// the sources of every main-module package the programs import.
func (g GoBuild) Build(ctx context.Context) (*GoBuildResult, error) {
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	goCmd := g.Go
	if goCmd == "" {
		goCmd = "go"
	}
	env, version, err := g.environ(ctx, goCmd)
	if err != nil {
		return nil, err
	}
	key, err := g.key(ctx, goCmd, env, version)
	if err != nil {
		return nil, err
	}
	res := &GoBuildResult{GoVersion: version, Env: BuildEnv, Flags: BuildFlags, Key: key}
	dir := ""
	if g.CacheDir != "" {
		dir = filepath.Join(g.CacheDir, "gobuild", key)
		if bins, err := g.load(dir); err == nil {
			log.Debug("go build cache hit", "key", key)
			res.Binaries, res.Cached = bins, true
			return res, nil
		}
	}
	bins, err := g.compile(ctx, goCmd, env)
	if err != nil {
		return nil, err
	}
	res.Binaries = bins
	if dir != "" {
		if err := g.store(dir, bins); err != nil {
			log.Warn("caching compiled binaries", "err", err)
		}
	}
	return res, nil
}

// environ builds the explicit environment: host locations plus BuildEnv.
func (g GoBuild) environ(ctx context.Context, goCmd string) ([]string, string, error) {
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"env", "-json", "GOVERSION"}, hostVars...)...)
	cmd.Dir = g.ModuleDir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local", "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("%w: go env: %w%s", ErrGoBuild, err, stderrOf(err))
	}
	var vals map[string]string
	if err := json.Unmarshal(out, &vals); err != nil {
		return nil, "", fmt.Errorf("parsing go env: %w", err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if t := os.Getenv("TMPDIR"); t != "" {
		env = append(env, "TMPDIR="+t)
	}
	if g.Offline {
		vals["GOPROXY"] = "off"
	}
	for _, k := range hostVars {
		if vals[k] != "" {
			env = append(env, k+"="+vals[k])
		}
	}
	return append(env, BuildEnv...), vals["GOVERSION"], nil
}

func stderrOf(err error) string {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && len(ee.Stderr) > 0 {
		return "\n" + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

func (g GoBuild) packages() []string { return append([]string{g.Init}, g.Commands...) }

// key hashes every input of the build. Paths on the host are left out, so
// the key is the same in every checkout.
func (g GoBuild) key(ctx context.Context, goCmd string, env []string, version string) (string, error) {
	h := sha256.New()
	line := func(s string) { h.Write([]byte(s)); h.Write([]byte{'\n'}) }
	line("mkcvm initrd go build v1")
	line(version)
	for _, s := range slices.Concat(BuildEnv, BuildFlags, []string{"--"}, g.packages()) {
		line(s)
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(g.ModuleDir, f))
		if err != nil && !(f == "go.sum" && errors.Is(err, fs.ErrNotExist)) {
			return "", fmt.Errorf("hashing build inputs: %w", err)
		}
		line(f)
		line(hex.EncodeToString(sha256Sum(b)))
	}
	const tmpl = `{{if not .Standard}}{{.ImportPath}}|{{with .Module}}{{.Path}}@{{.Version}}{{with .Replace}}=>{{.Path}}@{{.Version}}{{end}}{{end}}|{{.Dir}}|{{join .GoFiles ","}},{{join .SFiles ","}},{{join .EmbedFiles ","}}{{end}}`
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"list", "-deps", "-f", tmpl}, g.packages()...)...)
	cmd.Dir, cmd.Env = g.ModuleDir, env
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: go list: %w%s", ErrGoBuild, err, stderrOf(err))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "|")
		if len(f) != 4 {
			continue
		}
		line(f[0] + "|" + f[1])
		if !strings.HasSuffix(f[1], "@") {
			continue // a versioned module: pinned by go.sum (a local replacement ends in "@")
		}
		for _, name := range strings.Split(f[3], ",") {
			if name == "" {
				continue
			}
			b, err := os.ReadFile(filepath.Join(f[2], name))
			if err != nil {
				return "", fmt.Errorf("hashing build inputs: %w", err)
			}
			line(name + " " + hex.EncodeToString(sha256Sum(b)))
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func (g GoBuild) targets() []GoBinary {
	out := []GoBinary{{Package: g.Init, Path: "init"}}
	for _, c := range g.Commands {
		out = append(out, GoBinary{Package: c, Path: "bin/" + path.Base(c)})
	}
	return out
}

func (g GoBuild) compile(ctx context.Context, goCmd string, env []string) ([]GoBinary, error) {
	tmp, err := os.MkdirTemp("", "mkcvm-gobuild-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bins := g.targets()
	for i, b := range bins {
		out := filepath.Join(tmp, fmt.Sprint(i))
		args := slices.Concat([]string{"build"}, BuildFlags, []string{"-o", out, b.Package})
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir, cmd.Env = g.ModuleDir, env
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%w: %s: %w\n%s", ErrGoBuild, b.Package, err, strings.TrimSpace(string(out)))
		}
		data, err := os.ReadFile(out)
		if err != nil {
			return nil, err
		}
		bins[i].Data = data
	}
	return bins, nil
}

func (g GoBuild) load(dir string) ([]GoBinary, error) {
	bins := g.targets()
	for i := range bins {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprint(i)))
		if err != nil {
			return nil, err
		}
		bins[i].Data = b
	}
	return bins, nil
}

func (g GoBuild) store(dir string, bins []GoBinary) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for i, b := range bins {
		if err := os.WriteFile(filepath.Join(tmp, fmt.Sprint(i)), b.Data, 0o644); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, os.ErrExist) {
		if _, statErr := os.Stat(dir); statErr != nil {
			return err
		}
	}
	return nil
}
