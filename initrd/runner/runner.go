package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/mkcvm/mkcvm/measure"
)

// Stages of a runner boot, in order. StageError names the one that failed.
const (
	StageBoot    = "boot"
	StageConfig  = "config"
	StageTEE     = "tee"
	StageFetch   = "fetch"
	StageMeasure = "measure"
	StageLayers  = "layers"
	StageExtract = "extract"
	StageKBS     = "kbs"
	StageRun     = "run"
)

// StageError is a runner failure in one stage. Nothing of the workload runs
// after a StageError.
type StageError struct {
	Stage string
	Err   error
}

func (e *StageError) Error() string { return e.Stage + ": " + e.Err.Error() }
func (e *StageError) Unwrap() error { return e.Err }

func stageErr(stage string, err error) error {
	if err == nil {
		return nil
	}
	return &StageError{Stage: stage, Err: err}
}

// Spec is everything needed to start the workload process.
type Spec struct {
	Root     string   // extracted image
	Share    string   // directory bound at ShareMount inside the root
	Argv     []string // argv[0] is looked up in the image's PATH
	Env      []string
	UID, GID uint32
	Groups   []uint32
	Cwd      string
	Hostname string
}

// ShareMount is where the workload finds the attestation socket (attest.sock)
// and the key-broker secret (secret).
const ShareMount = "/run/mkcvm"

// Socket and secret file names inside ShareMount.
const (
	SocketName = "attest.sock"
	SecretName = "secret"
)

// Executor starts the workload and waits for it.
type Executor interface {
	Run(ctx context.Context, s *Spec) (exitCode int, err error)
}

// Runner ties the steps together.
type Runner struct {
	Config    *Config
	Attester  *Attester
	Transport http.RoundTripper // registry and key-broker transport
	WorkDir   string            // on tmpfs: layers/, root/, share/
	Exec      Executor
	Logf      func(stage, format string, args ...any)
}

func (r *Runner) logf(stage, format string, args ...any) {
	if r.Logf != nil {
		r.Logf(stage, format, args...)
	}
}

// Run pulls, measures, extracts and runs the workload, and returns its exit
// code. The workload is recorded in the event log before any of its bytes
// other than the manifest and config are fetched, and long before it runs.
func (r *Runner) Run(ctx context.Context) (int, error) {
	c := r.Config
	img, err := FetchImage(ctx, c.Image, PullOptions{Insecure: c.Insecure, Transport: r.Transport})
	if err != nil {
		return 0, stageErr(StageFetch, err)
	}
	if c.ConfigDigest != "" && c.ConfigDigest != img.ConfigDigest {
		return 0, stageErr(StageFetch, fmt.Errorf("%w: image config is %s, mkcvm.config pins %s", ErrDigest, img.ConfigDigest, c.ConfigDigest))
	}
	r.logf(StageFetch, "manifest %s config %s, %d layers", img.ManifestDigest, img.ConfigDigest, len(img.Manifest.Layers))
	events, err := measure.WorkloadEvents(measure.WorkloadRef{Image: c.Image, ConfigDigest: img.ConfigDigest, Args: c.Args, Env: c.Env})
	if err != nil {
		return 0, stageErr(StageMeasure, err)
	}
	for _, e := range events {
		if err := r.Attester.Record(e); err != nil {
			return 0, stageErr(StageMeasure, err)
		}
		r.logf(StageMeasure, "%s", e)
	}
	spec, err := r.prepare(ctx, img)
	if err != nil {
		return 0, err
	}
	r.logf(StageRun, "starting %q as %d:%d in %s", spec.Argv, spec.UID, spec.GID, spec.Cwd)
	code, err := r.Exec.Run(ctx, spec)
	if err != nil {
		return 0, stageErr(StageRun, err)
	}
	return code, nil
}

func (r *Runner) prepare(ctx context.Context, img *Image) (*Spec, error) {
	c := r.Config
	dirs := map[string]string{}
	for _, d := range []string{"layers", "root", "share"} {
		dirs[d] = filepath.Join(r.WorkDir, d)
		if err := os.Mkdir(dirs[d], 0o700); err != nil {
			return nil, stageErr(StageLayers, err)
		}
	}
	files, err := img.FetchLayers(ctx, dirs["layers"])
	if err != nil {
		os.RemoveAll(dirs["layers"])
		return nil, stageErr(StageLayers, err)
	}
	r.logf(StageLayers, "%d layers verified", len(files))
	root, err := os.OpenRoot(dirs["root"])
	if err != nil {
		return nil, stageErr(StageExtract, err)
	}
	defer root.Close()
	err = img.ExtractLayers(root, files, ExtractOptions{AllowSetuid: c.AllowSetuid, MaxBytes: c.MaxBytes})
	os.RemoveAll(dirs["layers"])
	if err != nil {
		return nil, stageErr(StageExtract, err)
	}
	if err := os.Chmod(dirs["root"], 0o755); err != nil {
		return nil, stageErr(StageExtract, err)
	}
	// The workload runs as the image's user: it needs to reach the socket.
	sock := filepath.Join(dirs["share"], SocketName)
	if _, err := r.Attester.Serve(ctx, sock); err != nil {
		return nil, stageErr(StageRun, err)
	}
	for p, mode := range map[string]os.FileMode{dirs["share"]: 0o755, sock: 0o666} {
		if err := os.Chmod(p, mode); err != nil {
			return nil, stageErr(StageRun, err)
		}
	}
	spec, err := BuildSpec(root, img.Config, c)
	if err != nil {
		return nil, stageErr(StageRun, err)
	}
	spec.Root, spec.Share = dirs["root"], dirs["share"]
	if c.KBS != "" {
		if err := r.secret(ctx, spec); err != nil {
			if c.KBSRequired {
				return nil, stageErr(StageKBS, err)
			}
			r.logf(StageKBS, "continuing without secret (mkcvm.kbs_required is off): %v", err)
		}
	}
	return spec, nil
}

// secret fetches the key-broker secret into the share directory, readable
// only by the workload's user.
func (r *Runner) secret(ctx context.Context, spec *Spec) error {
	s, err := FetchSecret(ctx, &http.Client{Transport: r.Transport}, r.Config.KBS, r.Attester)
	if err != nil {
		return err
	}
	p := filepath.Join(spec.Share, SecretName)
	if err := os.WriteFile(p, s, 0o400); err != nil {
		return err
	}
	if err := os.Chown(p, int(spec.UID), int(spec.GID)); err != nil {
		return err
	}
	r.logf(StageKBS, "secret of %d bytes in %s/%s", len(s), ShareMount, SecretName)
	return nil
}

// defaultPath is used when the image sets no PATH (as Docker does).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BuildSpec derives the process to start from the image config and the
// runner configuration: argv = Entrypoint + (mkcvm.arg, or else Cmd), env =
// image Env with mkcvm.env entries replacing same-named keys, the image's
// user (numeric or looked up in the image's /etc/passwd and /etc/group) and
// working directory.
func BuildSpec(root *os.Root, cf *v1.ConfigFile, c *Config) (*Spec, error) {
	ic := cf.Config
	argv := slices.Clone(ic.Entrypoint)
	if len(c.Args) > 0 {
		argv = append(argv, c.Args...)
	} else {
		argv = append(argv, ic.Cmd...)
	}
	if len(argv) == 0 {
		return nil, errors.New("image has no Entrypoint or Cmd and mkcvm.arg is not set")
	}
	env := mergeEnv(ic.Env, c.Env)
	if !slices.ContainsFunc(env, func(s string) bool { return strings.HasPrefix(s, "PATH=") }) {
		env = append(env, defaultPath)
	}
	uid, gid, err := lookupUser(root, ic.User)
	if err != nil {
		return nil, fmt.Errorf("image user %q: %w", ic.User, err)
	}
	cwd := ic.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("image working dir %q is not absolute", cwd)
	}
	return &Spec{Argv: argv, Env: env, UID: uid, GID: gid, Cwd: cwd, Hostname: c.Hostname}, nil
}

func mergeEnv(base, over []string) []string {
	out := slices.Clone(base)
	for _, kv := range over {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(s string) bool { return strings.HasPrefix(s, k+"=") })
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

// lookupUser resolves "", "uid", "uid:gid", "name" or "name:group".
func lookupUser(root *os.Root, u string) (uint32, uint32, error) {
	if u == "" {
		return 0, 0, nil
	}
	user, group, hasGroup := strings.Cut(u, ":")
	uid, gid, err := lookupID(root, "etc/passwd", user, true)
	if err != nil {
		return 0, 0, err
	}
	if hasGroup {
		if gid, _, err = lookupID(root, "etc/group", group, false); err != nil {
			return 0, 0, err
		}
	}
	return uid, gid, nil
}

// lookupID returns the id of a numeric or named entry in a passwd/group
// file, and for passwd the primary group.
func lookupID(root *os.Root, file, name string, passwd bool) (uint32, uint32, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		if !passwd {
			return uint32(n), 0, nil
		}
		// A numeric user keeps its passwd group if it has one, else gid = uid... 0.
		if _, g, err := lookupID(root, file, "#"+name, true); err == nil {
			return uint32(n), g, nil
		}
		return uint32(n), 0, nil
	}
	f, err := root.Open(file)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, 0, fmt.Errorf("no /%s in the image to resolve %q", file, name)
		}
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Split(sc.Text(), ":")
		if len(fl) < 3 {
			continue
		}
		if fl[0] != name && "#"+fl[2] != name {
			continue
		}
		id, err := strconv.ParseUint(fl[2], 10, 32)
		if err != nil {
			return 0, 0, fmt.Errorf("/%s: bad id %q for %q", file, fl[2], name)
		}
		var g uint64
		if passwd && len(fl) >= 4 {
			g, _ = strconv.ParseUint(fl[3], 10, 32)
		}
		return uint32(id), uint32(g), nil
	}
	return 0, 0, fmt.Errorf("%q not found in /%s", name, file)
}
