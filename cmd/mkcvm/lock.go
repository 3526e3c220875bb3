package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/spf13/cobra"
)

func init() {
	addCommand(func() *cobra.Command {
		var f recipeFlags
		var apt, write bool
		cmd := &cobra.Command{
			Use:   "lock RECIPE",
			Short: "Re-resolve the Debian package pins of a recipe and print the changes",
			Long: "lock finds the newest version of every pinned Debian package (in --debdir / $MKCVM_DEBDIR, and with\n" +
				"--apt, or when no deb folder is given, the apt candidate, downloaded with apt-get download), extracts\n" +
				"the pinned member and prints\n" +
				"each pin that changes (version, deb, sha256, size). --write updates the recipe file.",
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				env, err := f.load(args[0])
				if err != nil {
					return err
				}
				defer env.root.Close()
				work, err := os.MkdirTemp("", "mkcvm-lock-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(work)
				cs, err := builder.Lock(cmd.Context(), env.recipe, builder.LockOptions{DebDirs: env.debs, Apt: apt || len(env.debs) == 0, WorkDir: work, Root: env.root})
				if f.json {
					b, jerr := json.MarshalIndent(cs, "", "  ")
					if jerr != nil {
						return jerr
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				} else {
					for _, c := range cs {
						fmt.Fprintln(cmd.OutOrStdout(), c)
					}
				}
				if err != nil {
					return err
				}
				if len(cs) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), "mkcvm lock: all pins are current")
					return nil
				}
				if !write {
					return nil
				}
				b, err := builder.ApplyPinChanges(env.text, env.recipe, cs)
				if err != nil {
					return err
				}
				return os.WriteFile(args[0], b, 0o644)
			},
		}
		f.RegisterFlags(cmd.Flags())
		cmd.Flags().BoolVar(&apt, "apt", false, "also ask apt for the candidate version and download it (the default without deb folders)")
		cmd.Flags().BoolVar(&write, "write", false, "rewrite the recipe with the new pins")
		return cmd
	})
}
