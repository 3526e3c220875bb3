package main

import "github.com/spf13/cobra"

// measureSubcommands holds `mkcvm measure <platform>` constructors
// (snp, tdx, tpm), each registered from its own file.
var measureSubcommands []func() *cobra.Command

func addMeasureCommand(f func() *cobra.Command) {
	measureSubcommands = append(measureSubcommands, f)
}

func init() {
	addCommand(func() *cobra.Command {
		cmd := &cobra.Command{
			Use:   "measure",
			Short: "Compute launch digests and register values offline",
		}
		for _, f := range measureSubcommands {
			cmd.AddCommand(f())
		}
		return cmd
	})
}
