package main

import (
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/spf13/cobra"
)

func init() { addCommand(newFetchCmd) }

func newFetchCmd() *cobra.Command {
	var f registryFlags
	var key, out, at string
	var known []string
	cmd := &cobra.Command{
		Use:   "fetch --key PUB REF",
		Short: "Pull a published bundle and its signed manifest, verifying both",
		Long: `fetch resolves REF, verifies the signed manifests attached to it with the
public key (signature, schema, validity, supersedes/revokes among them and
--known), checks the artifact manifest against the signed one, and with
--out DIR downloads every artifact, re-hashing it, plus manifest.json and
manifest.sigstore.json. Exit status 1 means rejected.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keyPEM, err := os.ReadFile(key)
			if err != nil {
				return err
			}
			pub, err := manifest.ParsePublicKey(keyPEM)
			if err != nil {
				return err
			}
			now, err := verificationTime(at)
			if err != nil {
				return err
			}
			opts := manifest.VerifyOptions{Now: now}
			for _, k := range known {
				b, err := os.ReadFile(k)
				if err != nil {
					return err
				}
				opts.Others = append(opts.Others, b)
			}
			res, err := f.client().Fetch(cmd.Context(), args[0], pub, opts, out)
			if err != nil {
				return &ExitError{Code: 1, Err: err}
			}
			for _, r := range res.Rejected {
				logger().Warn("skipped signed manifest", "reason", r.Error())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s verified %s recipe=%s epoch=%d\n", res.Bundle, res.Signed.Digest, res.Signed.Manifest.Recipe.Name, res.Signed.Manifest.Epoch)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&key, "key", "", "trusted public key (PEM)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "download the artifacts into this directory")
	cmd.Flags().StringVar(&at, "at", "", "verification time (RFC 3339) instead of the current time")
	cmd.Flags().StringSliceVar(&known, "known", nil, "other signed manifests whose supersedes/revokes apply")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}
