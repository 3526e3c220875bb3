package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/spf13/cobra"
)

func init() { addCommand(newFirmwareCmd) }

func newFirmwareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "firmware",
		Short: "Build OVMF from a pinned Debian edk2 source package",
	}
	cmd.AddCommand(newFirmwareBuildCmd())
	return cmd
}

type firmwareBuildFlags struct {
	recipe, sourceDir, cacheDir, buildRoot, out string
	jobs, nice                                  int
	fetch, keep, json, showLog                  bool
}

func newFirmwareBuildCmd() *cobra.Command {
	var f firmwareBuildFlags
	cmd := &cobra.Command{
		Use:   "build --recipe RECIPE",
		Short: "Build (or reuse from the cache) the firmware of a recipe's [firmware.source]",
		Long: `build verifies the pinned edk2 source files and toolchain, unpacks the
source package, applies its Debian patches and builds the platform with
edk2's BaseTools in a fixed build root. The image is cached under a key
covering every input; a second build with the same inputs is a cache hit.
Prints "sha256  path" of the image (or the build record with --json).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFirmwareBuild(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.recipe, "recipe", "", "recipe file, or a file with only a [firmware.source] table (required)")
	fl.StringVar(&f.sourceDir, "source-dir", os.Getenv("MKCVM_SRCDIR"), "directory with the pinned source package files ($MKCVM_SRCDIR)")
	fl.BoolVar(&f.fetch, "fetch", false, "download missing source files with apt-get source first")
	fl.StringVar(&f.cacheDir, "cache", "", "firmware cache directory (default: user cache dir/mkcvm/firmware)")
	fl.StringVar(&f.buildRoot, "build-root", builder.DefaultFirmwareBuildRoot, "scratch directory (fixed path: part of reproducibility)")
	fl.BoolVar(&f.keep, "keep-build-root", false, "keep the scratch tree after a successful build")
	fl.StringVar(&f.out, "out", "", "also copy the image to this file")
	fl.IntVar(&f.jobs, "jobs", 0, "parallel compile jobs (default: number of CPUs)")
	fl.IntVar(&f.nice, "nice", 0, "run the compilers under nice -n N")
	fl.BoolVar(&f.json, "json", false, "print the build record as JSON")
	fl.BoolVar(&f.showLog, "log", false, "copy compiler output to stderr")
	_ = cmd.MarkFlagRequired("recipe")
	return cmd
}

func runFirmwareBuild(cmd *cobra.Command, f *firmwareBuildFlags) error {
	b, err := os.ReadFile(f.recipe)
	if err != nil {
		return err
	}
	src, err := builder.ParseFirmwareSource(b)
	if err != nil {
		return fmt.Errorf("recipe %q: %w", f.recipe, err)
	}
	var patches map[string][]byte
	if len(src.Patches) > 0 { // patches are inputs of a full recipe
		r, _, root, err := builder.LoadRecipe(f.recipe)
		if err != nil {
			return err
		}
		patches, err = builder.ReadPatchInputs(root, r)
		root.Close()
		if err != nil {
			return err
		}
	}
	if f.sourceDir == "" {
		return errors.New("--source-dir (or MKCVM_SRCDIR) is required")
	}
	if f.cacheDir == "" {
		if f.cacheDir, err = builder.DefaultFirmwareCacheDir(); err != nil {
			return err
		}
	}
	if f.fetch {
		if err := builder.FetchFirmwareSource(cmd.Context(), src, f.sourceDir, cmd.ErrOrStderr()); err != nil {
			return err
		}
	}
	opts := builder.FirmwareOptions{SourceDir: f.sourceDir, Patches: patches, CacheDir: f.cacheDir, BuildRoot: f.buildRoot,
		Jobs: f.jobs, Nice: f.nice, KeepBuildRoot: f.keep, Logger: logger()}
	if f.showLog {
		opts.Log = cmd.ErrOrStderr()
	}
	res, err := builder.BuildFirmware(cmd.Context(), src, opts)
	if err != nil {
		return err
	}
	if f.out != "" {
		if err := copyFirmwareFile(res.Path, f.out); err != nil {
			return err
		}
	}
	if f.json {
		b, err := json.MarshalIndent(res.Build, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
		return err
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", res.Build.Output.SHA256, res.Path)
	return err
}

func copyFirmwareFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
