package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/spf13/cobra"
)

func init() { addCommand(newReproduceCmd) }

type reproduceFlags struct {
	recipeFlags
	registryFlags
	key, at    string
	rebuild    bool
	recipePath string
	inputs     []string
}

func newReproduceCmd() *cobra.Command {
	var f reproduceFlags
	cmd := &cobra.Command{
		Use:   "reproduce REF|DIR",
		Short: "Recompute every reference value of a published bundle (--rebuild: rebuild it bit for bit)",
		Long: `reproduce takes a bundle directory (manifest.json plus artifacts) or a
registry reference (fetched and verified with --key) and recomputes every
reference value of every shape from the artifacts and the recipe recorded
in the manifest (tier 1). With --rebuild it also re-runs the build from the
recorded recipe and compares every artifact bit for bit (tier 2). Prints a
table of value, published, recomputed, match; exit status 1 on any
mismatch.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir, m, err := reproduceSource(cmd, args[0], f)
			if err != nil {
				return err
			}
			if dir != args[0] {
				defer os.RemoveAll(dir) // fetched into a temporary directory
			}
			rows, err := recomputeValues(dir, m, f.inputs)
			if err != nil {
				return err
			}
			if f.rebuild {
				r, err := rebuildRows(cmd, dir, m, f)
				if err != nil {
					return err
				}
				rows = append(rows, r...)
			}
			return printRows(cmd, rows, f.recipeFlags.json)
		},
	}
	f.recipeFlags.RegisterFlags(cmd.Flags())
	f.registryFlags.register(cmd)
	cmd.Flags().StringVar(&f.key, "key", "", "public key: verify manifest.sigstore.json (required for a REF)")
	cmd.Flags().StringVar(&f.at, "at", "", "verification time (RFC 3339) instead of the current time")
	cmd.Flags().BoolVar(&f.rebuild, "rebuild", false, "tier 2: rebuild from the recorded recipe and compare artifacts bit for bit")
	cmd.Flags().StringVar(&f.recipePath, "recipe", "", "the original recipe file, for inputs relative to it (its text must match the manifest)")
	cmd.Flags().StringSliceVar(&f.inputs, "input", nil, "name=path: bytes of a recipe input that is not a bundle artifact (e.g. a platform profile)")
	return cmd
}

// reproduceSource returns a directory holding the bundle and its verified
// or decoded manifest.
func reproduceSource(cmd *cobra.Command, arg string, f reproduceFlags) (string, *manifest.Manifest, error) {
	if st, err := os.Stat(arg); err == nil && st.IsDir() {
		raw, err := os.ReadFile(filepath.Join(arg, "manifest.json"))
		if err != nil {
			return "", nil, err
		}
		m, err := manifest.Decode(raw)
		if err != nil {
			return "", nil, fmt.Errorf("%s: %w", arg, err)
		}
		if f.key != "" {
			s, err := verifySigned(filepath.Join(arg, "manifest.sigstore.json"), f.key, nil, f.at)
			if err != nil {
				return "", nil, &ExitError{Code: 1, Err: err}
			}
			if d, _ := manifest.Digest(m); d != s.Digest {
				return "", nil, &ExitError{Code: 1, Err: fmt.Errorf("manifest.json (%s) is not the signed manifest (%s)", d, s.Digest)}
			}
		}
		return arg, m, nil
	}
	if f.key == "" {
		return "", nil, errors.New("--key is required to reproduce from a registry reference")
	}
	keyPEM, err := os.ReadFile(f.key)
	if err != nil {
		return "", nil, err
	}
	pub, err := manifest.ParsePublicKey(keyPEM)
	if err != nil {
		return "", nil, err
	}
	now, err := verificationTime(f.at)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "mkcvm-reproduce-")
	if err != nil {
		return "", nil, err
	}
	res, err := f.registryFlags.client().Fetch(cmd.Context(), arg, pub, manifest.VerifyOptions{Now: now}, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, &ExitError{Code: 1, Err: err}
	}
	return dir, res.Signed.Manifest, nil
}

// recomputeValues is tier 1: every shape recomputed from the artifacts in
// dir with the shape parameters of the recorded recipe.
func recomputeValues(dir string, m *manifest.Manifest, inputArgs []string) ([]manifest.ValueRow, error) {
	if err := manifest.CheckArtifacts(os.DirFS(dir), m); err != nil {
		return nil, &ExitError{Code: 1, Err: err}
	}
	r, err := builder.ParseRecipe([]byte(m.Recipe.Text))
	if err != nil {
		return nil, fmt.Errorf("recorded recipe: %w", err)
	}
	mi, err := measureInputsFromBundle(dir, m, r, inputArgs)
	if err != nil {
		return nil, err
	}
	var rows []manifest.ValueRow
	for i := range m.Shapes {
		pub := &m.Shapes[i]
		idx := -1
		for j, s := range r.Shapes {
			if s.Name == pub.Name {
				idx = j
			}
		}
		if idx < 0 {
			rows = append(rows, manifest.ValueRow{Shape: pub.Name, Value: "shape", Published: pub.Platform, Recomputed: "-", Detail: "not in the recorded recipe"})
			continue
		}
		re, err := builder.ComputeShape(mi, r.Shapes[idx])
		if err != nil {
			rows = append(rows, manifest.ValueRow{Shape: pub.Name, Value: "shape", Published: pub.Platform, Recomputed: "error", Detail: err.Error()})
			continue
		}
		rows = append(rows, manifest.CompareShape(pub, &re)...)
	}
	return rows, nil
}

// measureInputsFromBundle maps the bundle's artifacts (by role) and the
// recipe's inputs (by sha256 against the artifacts and --input files) to
// the builder's measurement inputs.
func measureInputsFromBundle(dir string, m *manifest.Manifest, r *builder.Recipe, inputArgs []string) (*builder.MeasureInputs, error) {
	mi := &builder.MeasureInputs{Cmdline: m.Cmdline, Inputs: map[string][]byte{}, Workload: r.Initrd.Workload}
	bySHA := map[string][]byte{}
	for _, a := range m.Artifacts {
		b, err := os.ReadFile(filepath.Join(dir, a.Name))
		if err != nil {
			return nil, err
		}
		bySHA[a.SHA256] = b
		switch a.Role {
		case "firmware":
			mi.Firmware = b
		case "firmware-code":
			mi.FirmwareCode = b
		case "firmware-vars":
			mi.FirmwareVars = b
		case "kernel":
			mi.Kernel = b
		case "initrd":
			mi.Initrd = b
		}
	}
	for name, in := range r.Inputs {
		if b, ok := bySHA[in.SHA256]; ok {
			mi.Inputs[name] = b
		}
	}
	for _, arg := range inputArgs {
		name, path, ok := strings.Cut(arg, "=")
		if !ok {
			return nil, fmt.Errorf("--input %q: want name=path", arg)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		mi.Inputs[name] = b
	}
	return mi, nil
}

// rebuildRows is tier 2: build the recorded recipe again and compare the
// artifacts bit for bit.
func rebuildRows(cmd *cobra.Command, dir string, m *manifest.Manifest, f reproduceFlags) ([]manifest.ValueRow, error) {
	path := f.recipePath
	if path == "" {
		tmp, err := os.MkdirTemp("", "mkcvm-rebuild-recipe-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		path = filepath.Join(tmp, "recipe.toml")
		if err := os.WriteFile(path, []byte(m.Recipe.Text), 0o644); err != nil {
			return nil, err
		}
	}
	env, err := f.recipeFlags.load(path)
	if err != nil {
		return nil, err
	}
	defer env.root.Close()
	if !bytes.Equal(env.text, []byte(m.Recipe.Text)) {
		return nil, fmt.Errorf("%s differs from the recipe recorded in the manifest", path)
	}
	mod, err := f.recipeFlags.moduleDir(path)
	if err != nil {
		return nil, err
	}
	res, err := builder.Build(cmd.Context(), env.recipe, builder.BuildOptions{
		RecipeText: env.text, ModuleDir: mod, Cache: env.cache, Offline: f.offline,
		Fetcher: newBundleFetcher(dir, m, env.fetcher()), Logger: logger(), DryRun: true,
	})
	if err != nil {
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	rows := manifest.CompareArtifacts(m.Artifacts, res.Manifest.Artifacts)
	// Validity and rotation entries are set at signing time, not by the
	// build: carry them over before comparing the whole manifest.
	re := *res.Manifest
	re.Validity, re.Supersedes, re.Revokes = m.Validity, m.Supersedes, m.Revokes
	pd, _ := manifest.Digest(m)
	rd, err := manifest.Digest(&re)
	if err != nil {
		return nil, fmt.Errorf("rebuilt manifest: %w", err)
	}
	return append(rows, manifest.ValueRow{Value: "manifest.json", Published: pd, Recomputed: rd, Match: pd == rd}), nil
}

func printRows(cmd *cobra.Command, rows []manifest.ValueRow, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			return err
		}
	} else {
		manifest.WriteRows(cmd.OutOrStdout(), rows)
	}
	var bad []string
	for _, r := range rows {
		if !r.Match {
			bad = append(bad, strings.TrimSpace(r.Shape+" "+r.Value))
		}
	}
	if len(bad) > 0 {
		return &ExitError{Code: 1, Err: fmt.Errorf("%d values differ: %s", len(bad), strings.Join(bad, ", "))}
	}
	return nil
}

// bundleFetcher serves recipe inputs that are also bundle artifacts (the
// firmware and kernel usually are) from the bundle directory, by sha256;
// the builder verifies every pin. Other inputs go to next.
type bundleFetcher struct {
	dir   string
	bySHA map[string]string
	next  builder.Fetcher
}

func newBundleFetcher(dir string, m *manifest.Manifest, next builder.Fetcher) *bundleFetcher {
	f := &bundleFetcher{dir: dir, bySHA: map[string]string{}, next: next}
	for _, a := range m.Artifacts {
		f.bySHA[a.SHA256] = a.Name
	}
	return f
}

func (f *bundleFetcher) Fetch(ctx context.Context, name string, in builder.Input) (io.ReadCloser, error) {
	if n, ok := f.bySHA[in.SHA256]; ok {
		return os.Open(filepath.Join(f.dir, n))
	}
	return f.next.Fetch(ctx, name, in)
}
