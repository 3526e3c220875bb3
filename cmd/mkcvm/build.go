package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// recipeFlags are the flags shared by build, inputs and lock.
type recipeFlags struct {
	cache   string
	offline bool
	debDirs []string
	module  string
	json    bool
}

func (f *recipeFlags) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.cache, "cache", "", "input and compiled-binary cache (default $XDG_CACHE_HOME/mkcvm)")
	fs.BoolVar(&f.offline, "offline", false, "never fetch; fail if an input is not in the cache")
	fs.StringArrayVar(&f.debDirs, "debdir", nil, "folder holding .deb inputs (repeatable; default $MKCVM_DEBDIR)")
	fs.StringVar(&f.module, "module", "", "Go module the initrd programs are built in (default: the module holding the recipe, else the current one)")
	fs.BoolVar(&f.json, "json", false, "print the result as JSON (and no progress bars)")
}

// recipeEnv is a loaded recipe with everything needed to act on it.
type recipeEnv struct {
	path   string
	recipe *builder.Recipe
	text   []byte
	root   *os.Root
	cache  *builder.Cache
	debs   []string
}

func (f *recipeFlags) load(path string) (*recipeEnv, error) {
	r, text, root, err := builder.LoadRecipe(path)
	if err != nil {
		return nil, err
	}
	dir := f.cache
	if dir == "" {
		if dir, err = builder.DefaultCacheDir(); err != nil {
			root.Close()
			return nil, err
		}
	}
	debs := f.debDirs
	if len(debs) == 0 && os.Getenv("MKCVM_DEBDIR") != "" {
		debs = filepath.SplitList(os.Getenv("MKCVM_DEBDIR"))
	}
	return &recipeEnv{path: path, recipe: r, text: text, root: root, cache: &builder.Cache{Dir: dir}, debs: debs}, nil
}

func (e *recipeEnv) fetcher() *builder.SourceFetcher {
	f := builder.NewSourceFetcher(e.recipe, e.root, e.debs)
	f.Remote = []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	return f
}

// moduleDir finds the go.mod above the recipe, else above the current
// directory.
func (f *recipeFlags) moduleDir(recipePath string) (string, error) {
	if f.module != "" {
		return filepath.Abs(f.module)
	}
	for _, start := range []string{filepath.Dir(recipePath), "."} {
		d, err := filepath.Abs(start)
		if err != nil {
			return "", err
		}
		for {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return d, nil
			}
			if filepath.Dir(d) == d {
				break
			}
			d = filepath.Dir(d)
		}
	}
	return "", errors.New("no Go module found for the initrd programs: pass --module")
}

type buildResultJSON struct {
	Dir            string          `json:"dir"`
	ManifestSHA256 string          `json:"manifest_sha256"`
	Artifacts      json.RawMessage `json:"artifacts"`
}

func init() {
	addCommand(func() *cobra.Command {
		var f recipeFlags
		var out string
		var dry bool
		var signKey string
		cmd := &cobra.Command{
			Use:   "build RECIPE -o DIR",
			Short: "Build a recipe into a reproducible guest bundle with its manifest",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if out == "" && !dry {
					return errors.New(`required flag "output" not set`)
				}
				env, err := f.load(args[0])
				if err != nil {
					return err
				}
				defer env.root.Close()
				mod, err := f.moduleDir(args[0])
				if err != nil {
					return err
				}
				recipeDir, err := filepath.Abs(filepath.Dir(args[0]))
				if err != nil {
					return err
				}
				sign, err := buildSigner(signKey)
				if err != nil {
					return err
				}
				prog := newProgress(cmd.ErrOrStderr(), f.json)
				defer prog.Wait()
				res, err := builder.Build(cmd.Context(), env.recipe, builder.BuildOptions{
					Out: out, RecipeText: env.text, ModuleDir: mod, Cache: env.cache, Offline: f.offline,
					Fetcher: env.fetcher(), Progress: prog, Logger: logger(),
					RecipeDir: recipeDir, DebDirs: env.debs, DryRun: dry, Sign: sign,
				})
				if err != nil {
					return err
				}
				prog.Wait()
				return printBuild(cmd.OutOrStdout(), res, f.json)
			},
		}
		f.RegisterFlags(cmd.Flags())
		cmd.Flags().StringVarP(&out, "output", "o", "", "output directory (required unless --dry-run)")
		cmd.Flags().BoolVar(&dry, "dry-run", false, "do everything but write the output; print the digests")
		cmd.Flags().StringVar(&signKey, "sign-key", "", "sign manifest.json with this key file (as `mkcvm sign`) into "+builder.SignatureFile)
		return cmd
	})
}

func printBuild(w io.Writer, res *builder.BuildResult, asJSON bool) error {
	msum := bundleHex(res.ManifestJSON)
	if asJSON {
		arts, err := json.Marshal(res.Manifest.Artifacts)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(buildResultJSON{Dir: res.Dir, ManifestSHA256: msum, Artifacts: arts}, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	if res.Dir == "" {
		fmt.Fprintln(w, "(dry run: nothing written)")
	} else {
		fmt.Fprintln(w, res.Dir)
	}
	for _, a := range res.Manifest.Artifacts {
		fmt.Fprintf(w, "%s  %s\n", a.SHA256, a.Name)
	}
	_, err := fmt.Fprintf(w, "%s  %s\n", msum, builder.ManifestFile)
	return err
}

// progress shows bars on a terminal and plain lines otherwise.
type progress struct {
	p     *mpb.Progress
	w     io.Writer
	quiet bool
	once  sync.Once
}

func newProgress(w io.Writer, asJSON bool) *progress {
	pr := &progress{w: w, quiet: asJSON}
	if f, ok := w.(*os.File); ok && !asJSON {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			pr.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40))
		}
	}
	return pr
}

func (p *progress) Wait() {
	if p.p != nil {
		p.once.Do(p.p.Wait)
	}
}

func (p *progress) Start(name string, total int64) builder.Task {
	if p.p == nil {
		if !p.quiet {
			slog.Info(name)
		}
		return lineTask{}
	}
	var bar *mpb.Bar
	if total > 0 {
		bar = p.p.AddBar(total, mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f")))
	} else {
		bar = p.p.AddSpinner(0, mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO)))
	}
	return barTask{bar}
}

type lineTask struct{}

func (lineTask) Add(int) {}
func (lineTask) Done(err error) {
	if err != nil {
		slog.Debug("task failed", "err", err)
	}
}

type barTask struct{ b *mpb.Bar }

func (t barTask) Add(n int) { t.b.IncrBy(n) }
func (t barTask) Done(err error) {
	if err != nil {
		t.b.Abort(false)
		return
	}
	t.b.SetTotal(-1, true)
}

func bundleHex(b []byte) string {
	return strings.ToLower(fmt.Sprintf("%x", bundleSum(b)))
}

// buildSigner loads the --sign-key file before the build starts, so a bad
// key fails fast, and returns the signing hook (nil without a key).
func buildSigner(path string) (func([]byte) ([]byte, error), error) {
	if path == "" {
		return nil, nil
	}
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sign-key: %w", err)
	}
	key, err := manifest.ParsePrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("--sign-key %s: %w", path, err)
	}
	return func(enc []byte) ([]byte, error) {
		m, err := manifest.Decode(enc)
		if err != nil {
			return nil, err
		}
		return manifest.Sign(m, key, rand.Reader)
	}, nil
}
