package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mkcvm/mkcvm/manifest"
	"github.com/spf13/cobra"
)

func init() {
	addCommand(newKeygenCmd)
	addCommand(newSignCmd)
}

func newKeygenCmd() *cobra.Command {
	var out, keyType string
	cmd := &cobra.Command{
		Use:   "keygen --out PREFIX",
		Short: "Create a signing key (PREFIX.key, PKCS #8) and its public key (PREFIX.pub)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			priv, pub, err := manifest.GenerateKey(rand.Reader, keyType)
			if err != nil {
				return err
			}
			if err := os.WriteFile(out+".key", priv, 0o600); err != nil {
				return err
			}
			if err := os.WriteFile(out+".pub", pub, 0o644); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out+".pub")
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "mkcvm", "path prefix of the key files")
	cmd.Flags().StringVar(&keyType, "type", manifest.KeyECDSAP256, "key type: ecdsa-p256 or ed25519")
	return cmd
}

type signFlags struct {
	key, out   string
	validFor   time.Duration
	supersedes []string
	revokes    []string
}

func newSignCmd() *cobra.Command {
	var f signFlags
	cmd := &cobra.Command{
		Use:   "sign --key KEY MANIFEST",
		Short: "Sign a manifest.json as an in-toto statement in a Sigstore bundle (offline)",
		Long: `sign wraps the canonical manifest in an in-toto Statement (subjects: the
artifact digests and the OCI bundle digest) in a DSSE envelope inside a
Sigstore bundle, signed with an ECDSA P-256 or Ed25519 key file. --valid-for,
--supersedes and --revokes edit the manifest first and rewrite it in place.
Prints the bundle path.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSign(cmd, args[0], f)
		},
	}
	cmd.Flags().StringVar(&f.key, "key", "", "ECDSA P-256 or Ed25519 private key (PEM)")
	cmd.Flags().StringVarP(&f.out, "out", "o", "", "bundle path (default: manifest.sigstore.json next to MANIFEST)")
	cmd.Flags().DurationVar(&f.validFor, "valid-for", 0, "set expires_at to the build epoch plus this duration")
	cmd.Flags().StringSliceVar(&f.supersedes, "supersedes", nil, "manifest digest (sha256:...) or signed/unsigned manifest file this one supersedes")
	cmd.Flags().StringSliceVar(&f.revokes, "revokes", nil, "manifest digest (sha256:...) or manifest file this one revokes")
	_ = cmd.MarkFlagRequired("key")
	return cmd
}

func runSign(cmd *cobra.Command, path string, f signFlags) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m, err := manifest.Decode(raw)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	keyPEM, err := os.ReadFile(f.key)
	if err != nil {
		return err
	}
	key, err := manifest.ParsePrivateKey(keyPEM)
	if err != nil {
		return fmt.Errorf("reading %s: %w", f.key, err)
	}
	edited := f.validFor > 0 || len(f.supersedes) > 0 || len(f.revokes) > 0
	if f.validFor > 0 {
		m.Validity = manifest.NewValidity(m.Epoch, f.validFor)
	}
	for _, s := range f.supersedes {
		d, err := manifestRef(s)
		if err != nil {
			return fmt.Errorf("--supersedes: %w", err)
		}
		m.Supersedes = append(m.Supersedes, d)
	}
	for _, s := range f.revokes {
		d, err := manifestRef(s)
		if err != nil {
			return fmt.Errorf("--revokes: %w", err)
		}
		m.Revokes = append(m.Revokes, d)
	}
	if edited {
		canon, err := manifest.Encode(m)
		if err != nil {
			return err
		}
		if err := os.WriteFile(path, canon, 0o644); err != nil {
			return err
		}
	}
	b, err := manifest.Sign(m, key, rand.Reader)
	if err != nil {
		return err
	}
	out := f.out
	if out == "" {
		out = filepath.Join(filepath.Dir(path), "manifest.sigstore.json")
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), out)
	return nil
}

// manifestRef turns a "sha256:..." digest, a manifest.json or a signed
// bundle file into a manifest digest.
func manifestRef(s string) (string, error) {
	if strings.HasPrefix(s, "sha256:") {
		return s, nil
	}
	b, err := os.ReadFile(s)
	if err != nil {
		return "", err
	}
	if sm, err := manifest.ParseBundle(b); err == nil {
		return sm.Digest, nil
	}
	m, err := manifest.Decode(b)
	if err != nil {
		return "", fmt.Errorf("%s is neither a manifest nor a signed manifest: %w", s, err)
	}
	return manifest.Digest(m)
}
