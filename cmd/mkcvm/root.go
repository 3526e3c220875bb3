package main

import (
	"errors"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
)

// subcommands holds the constructors of the top-level subcommands. Each
// subcommand lives in its own file and registers itself from an init func,
// so adding one never edits this file.
var subcommands []func() *cobra.Command

// addCommand registers a top-level subcommand constructor.
func addCommand(f func() *cobra.Command) { subcommands = append(subcommands, f) }

// ExitError carries a specific process exit code (for example 1 for "values
// differ" from verify/explain) through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func exitCode(err error) int {
	if ee, ok := errors.AsType[*ExitError](err); ok {
		return ee.Code
	}
	return 2
}

var verbose bool

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "mkcvm",
		Short:         "Reproducible confidential-VM guests and their reference values",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
		},
	}
	root.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "debug logging on stderr")
	for _, f := range subcommands {
		root.AddCommand(f())
	}
	return root
}

// logger returns the logger subcommands hand to libraries (stderr only).
func logger() *slog.Logger { return slog.Default() }
