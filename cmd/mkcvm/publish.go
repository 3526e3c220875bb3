package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/spf13/cobra"
)

func init() { addCommand(newPublishCmd) }

// registryFlags are shared by publish and fetch.
type registryFlags struct{ insecure bool }

func (f *registryFlags) register(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow plain-HTTP registries (e.g. 127.0.0.1 test registries)")
}

func (f *registryFlags) client() *manifest.OCIRegistry {
	r := &manifest.OCIRegistry{Log: logger(), Remote: []remote.Option{remote.WithAuthFromKeychain(authn.DefaultKeychain)}}
	if f.insecure {
		r.Name = append(r.Name, name.Insecure)
	}
	return r
}

func newPublishCmd() *cobra.Command {
	var f registryFlags
	var signed string
	cmd := &cobra.Command{
		Use:   "publish DIR REF",
		Short: "Push a built bundle as an OCI artifact with its signed manifest as a referrer",
		Long: `publish pushes the artifacts listed in DIR/manifest.json (firmware, kernel,
initrd, optional disk) as one OCI artifact tagged REF, then the signed
manifest (DIR/manifest.sigstore.json, from mkcvm sign) as a referrer of it
(OCI 1.1 subject; on registries without the referrers API the sha256-<hex>
fallback tag). Prints the bundle and signature digest references.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if signed == "" {
				signed = filepath.Join(args[0], "manifest.sigstore.json")
			}
			b, err := os.ReadFile(signed)
			if err != nil {
				return err
			}
			p, err := f.client().Publish(cmd.Context(), os.DirFS(args[0]), b, args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s\n%s\n", p.Bundle, p.Signature)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&signed, "signed", "", "signed manifest (default DIR/manifest.sigstore.json)")
	return cmd
}
