package main

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mkcvm/mkcvm/builder"
	"github.com/spf13/cobra"
)

func bundleSum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// inputRow is one line of `mkcvm inputs --json`.
type inputRow struct {
	Name   string `json:"name"`
	State  string `json:"state"` // cached, fetched, MISSING, BAD
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	Source string `json:"source"`
	Error  string `json:"error,omitempty"`
}

func init() {
	addCommand(func() *cobra.Command {
		var f recipeFlags
		cmd := &cobra.Command{
			Use:   "inputs RECIPE",
			Short: "Fetch and verify every input of a recipe into the cache; print what is missing",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				env, err := f.load(args[0])
				if err != nil {
					return err
				}
				defer env.root.Close()
				prog := newProgress(cmd.ErrOrStderr(), f.json)
				_, sts, err := builder.Resolve(cmd.Context(), env.recipe, builder.ResolveOptions{
					Cache: env.cache, Offline: f.offline, Fetcher: env.fetcher(), Progress: prog,
				})
				prog.Wait()
				out := cmd.OutOrStdout()
				var rows []inputRow
				for _, s := range sts {
					state := "fetched"
					switch {
					case s.Err != nil && errors.Is(s.Err, builder.ErrMissing):
						state = "MISSING"
					case s.Err != nil:
						state = "BAD"
					case s.Cached:
						state = "cached"
					}
					row := inputRow{Name: s.Name, State: state, SHA256: s.Input.SHA256, Size: s.Input.Size, Source: builder.SourceString(s.Input)}
					if s.Err != nil {
						row.Error = s.Err.Error()
					}
					rows = append(rows, row)
					if !f.json {
						fmt.Fprintf(out, "%-8s %-16s %s %d %s\n", state, s.Name, s.Input.SHA256, s.Input.Size, row.Source)
					}
				}
				if f.json {
					b, jerr := json.MarshalIndent(rows, "", "  ")
					if jerr != nil {
						return jerr
					}
					fmt.Fprintf(out, "%s\n", b)
				}
				if err != nil {
					return &ExitError{Code: 1, Err: err}
				}
				return nil
			},
		}
		f.RegisterFlags(cmd.Flags())
		return cmd
	})
}
