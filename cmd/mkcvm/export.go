package main

import (
	"fmt"
	"os"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/export"
	"github.com/spf13/cobra"
)

func init() { addCommand(newExportCmd) }

func newExportCmd() *cobra.Command {
	var format, key, pub, at, out string
	cmd := &cobra.Command{
		Use:   "export --format FORMAT MANIFEST",
		Short: "Export reference values for Trustee RVPS, Constellation, in-toto or CoRIM",
		Long: `export renders a manifest's reference values for other verifiers:
  rvps           Trustee RVPS register message (sample provenance)
  constellation  Constellation measurements.json (qemu-vtpm, qemu-tdx)
  in-toto        in-toto Statement v1 with the manifest as predicate
  corim          COSE_Sign1-signed CoRIM (needs --key, ECDSA P-256)
MANIFEST is a manifest.json, or a signed bundle verified with --pub.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := loadExportManifest(args[0], pub, at)
			if err != nil {
				return err
			}
			b, err := renderExport(format, m, key)
			if err != nil {
				return err
			}
			if out != "" {
				return os.WriteFile(out, b, 0o644)
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "rvps, constellation, in-toto or corim")
	cmd.Flags().StringVar(&key, "key", "", "signing key for corim (PEM, ECDSA P-256)")
	cmd.Flags().StringVar(&pub, "pub", "", "public key verifying a signed-bundle MANIFEST")
	cmd.Flags().StringVar(&at, "at", "", "verification time (RFC 3339) instead of the current time")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write to this file instead of stdout")
	_ = cmd.MarkFlagRequired("format")
	return cmd
}

func loadExportManifest(path, pub, at string) (*manifest.Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if _, perr := manifest.ParseBundle(b); perr == nil {
		if pub == "" {
			return nil, fmt.Errorf("%s is a signed manifest: pass --pub to verify it", path)
		}
		s, err := verifySigned(path, pub, nil, at)
		if err != nil {
			return nil, &ExitError{Code: 1, Err: err}
		}
		return s.Manifest, nil
	}
	return manifest.Decode(b)
}

func renderExport(format string, m *manifest.Manifest, keyPath string) ([]byte, error) {
	switch format {
	case "rvps":
		return export.RVPS(m)
	case "constellation":
		return export.Constellation(m)
	case "in-toto":
		return export.InToto(m)
	case "corim":
		if keyPath == "" {
			return nil, fmt.Errorf("--format corim needs --key")
		}
		pem, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, err
		}
		k, err := manifest.ParsePrivateKey(pem)
		if err != nil {
			return nil, err
		}
		return export.CoRIM(m, k)
	}
	return nil, fmt.Errorf("unknown --format %q (rvps, constellation, in-toto, corim)", format)
}
