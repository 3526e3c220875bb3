package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/spf13/cobra"
)

func init() { addCommand(newVerifyManifestCmd) }

type verifyManifestFlags struct {
	key       string
	known     []string
	at        string
	artifacts string
	json      bool
}

func newVerifyManifestCmd() *cobra.Command {
	var f verifyManifestFlags
	cmd := &cobra.Command{
		Use:   "verify-manifest --key PUB BUNDLE",
		Short: "Verify a signed manifest; fail closed with the reason",
		Long: `verify-manifest checks a signed manifest (Sigstore bundle) with a public key:
bundle and statement structure, the signature, the schema (no unknown
fields, canonical encoding), subjects, the validity window at the current
time (or --at), and that no --known manifest signed by the same key
supersedes or revokes it. With --artifacts DIR it also hashes every
artifact. Exit status 1 means rejected.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := verifySigned(args[0], f.key, f.known, f.at)
			if err == nil && f.artifacts != "" {
				err = manifest.CheckArtifacts(os.DirFS(f.artifacts), s.Manifest)
			}
			if err != nil {
				return &ExitError{Code: 1, Err: fmt.Errorf("rejected %s: %w", args[0], err)}
			}
			return printVerified(cmd, s, f.json)
		},
	}
	cmd.Flags().StringVar(&f.key, "key", "", "trusted public key (PEM)")
	cmd.Flags().StringSliceVar(&f.known, "known", nil, "other signed manifests whose supersedes/revokes apply")
	cmd.Flags().StringVar(&f.at, "at", "", "verification time (RFC 3339) instead of the current time")
	cmd.Flags().StringVar(&f.artifacts, "artifacts", "", "directory whose artifact files are checked against the manifest")
	cmd.Flags().BoolVar(&f.json, "json", false, "print the result as JSON")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

// verificationTime is the only clock read of the manifest commands.
func verificationTime(at string) (time.Time, error) {
	if at == "" {
		return time.Now(), nil
	}
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return time.Time{}, fmt.Errorf("--at: %w", err)
	}
	return t, nil
}

func verifySigned(path, keyPath string, known []string, at string) (*manifest.SignedManifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	pub, err := manifest.ParsePublicKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", keyPath, err)
	}
	now, err := verificationTime(at)
	if err != nil {
		return nil, err
	}
	opts := manifest.VerifyOptions{Now: now}
	for _, k := range known {
		o, err := os.ReadFile(k)
		if err != nil {
			return nil, err
		}
		opts.Others = append(opts.Others, o)
	}
	return manifest.Verify(b, pub, opts)
}

func printVerified(cmd *cobra.Command, s *manifest.SignedManifest, asJSON bool) error {
	w := cmd.OutOrStdout()
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Verified bool   `json:"verified"`
			Digest   string `json:"digest"`
			Recipe   string `json:"recipe"`
			Epoch    int64  `json:"epoch"`
		}{true, s.Digest, s.Manifest.Recipe.Name, s.Manifest.Epoch})
	}
	fmt.Fprintf(w, "verified %s recipe=%s epoch=%d artifacts=%d shapes=%d\n", s.Digest, s.Manifest.Recipe.Name, s.Manifest.Epoch, len(s.Manifest.Artifacts), len(s.Manifest.Shapes))
	return nil
}
