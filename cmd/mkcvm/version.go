package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() {
	addCommand(func() *cobra.Command {
		return &cobra.Command{
			Use:   "version",
			Short: "Print the mkcvm version, Go toolchain and module versions",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				bi, ok := debug.ReadBuildInfo()
				if !ok {
					return fmt.Errorf("reading build info: not available")
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "mkcvm %s\n%s\n", bi.Main.Version, bi.GoVersion)
				for _, d := range bi.Deps {
					fmt.Fprintf(out, "%s %s\n", d.Path, d.Version)
				}
				return nil
			},
		}
	})
}
