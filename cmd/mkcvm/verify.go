package main

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-sev-guest/verify/trust"
	"github.com/mkcvm/mkcvm/manifest"
	"github.com/mkcvm/mkcvm/manifest/evidence"
	"github.com/spf13/cobra"
)

func init() { addCommand(newVerifyCmd) }

type verifyFlags struct {
	manifest, key, at, shape string
	known                    []string
	ak, nonce                string
	amdRoots, intelRoot      string
	ccel                     string
	unsigned, fetchCerts     bool
	asJSON                   bool
}

func newVerifyCmd() *cobra.Command {
	var f verifyFlags
	cmd := &cobra.Command{
		Use:   "verify --manifest SIGNED --key PUB EVIDENCE...",
		Short: "Verify SNP/TDX/TPM evidence against a signed manifest",
		Long: `verify first verifies the signed manifest (as verify-manifest), then each
evidence file: an SNP attestation report (optionally followed by its
certificate table; signature chain to the AMD root via go-sev-guest,
offline), a TDX v4 quote (go-tdx-guest, offline), a TPM evidence JSON
(quotes checked with --ak, event log replayed against the quoted PCRs,
then compared with the manifest), or the runner's GET /evidence JSON
(binding to --nonce, log and key checked, then each TEE's evidence).
Every register the manifest pins is required. Prefix a file with snp:,
tdx:, tpm: or runner: to skip detection.
Prints a table; exit status 1 means rejected.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVerify(cmd, args, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.manifest, "manifest", "", "signed manifest (Sigstore bundle), or manifest.json with --insecure-unsigned")
	fl.StringVar(&f.key, "key", "", "trusted public key of the manifest signer (PEM)")
	fl.StringSliceVar(&f.known, "known", nil, "other signed manifests whose supersedes/revokes apply")
	fl.StringVar(&f.at, "at", "", "verification time (RFC 3339) instead of the current time")
	fl.StringVar(&f.shape, "shape", "", "manifest shape to compare with (default: any shape of the evidence's platform)")
	fl.StringVar(&f.ak, "ak", "", "TPM attestation key, PEM public key")
	fl.StringVar(&f.nonce, "nonce", "", "expected nonce (hex): TPM qualifying data, SNP REPORT_DATA / TDX REPORTDATA prefix")
	fl.StringVar(&f.amdRoots, "amd-roots", "", "PEM file with the AMD ASK and ARK to trust instead of the embedded ones")
	fl.StringVar(&f.intelRoot, "intel-root", "", "PEM file with the Intel SGX root CA to trust instead of the embedded one")
	fl.StringVar(&f.ccel, "ccel", "", "TDX: the CC event log (CCEL data) to replay against the quoted RTMRs")
	fl.BoolVar(&f.fetchCerts, "fetch-certs", false, "fetch a missing SNP VCEK from AMD KDS (network); default offline")
	fl.BoolVar(&f.asJSON, "json", false, "print the checks as JSON")
	fl.BoolVar(&f.unsigned, "insecure-unsigned", false, "accept an unsigned manifest.json (testing only)")
	_ = cmd.MarkFlagRequired("manifest")
	return cmd
}

func runVerify(cmd *cobra.Command, args []string, f verifyFlags) error {
	m, err := loadManifestForVerify(f)
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	now, err := verificationTime(f.at)
	if err != nil {
		return err
	}
	opts := evidence.Options{Shape: f.shape}
	opts.SNP.Now, opts.TDX.Now = now, now
	if f.nonce != "" {
		n, err := hex.DecodeString(f.nonce)
		if err != nil {
			return fmt.Errorf("--nonce: %w", err)
		}
		opts.TPM.Nonce, opts.SNP.ReportData, opts.TDX.ReportData = n, n, n
	}
	if f.ak != "" {
		if opts.TPM.AK, err = readPublicKey(f.ak); err != nil {
			return err
		}
	}
	if f.amdRoots != "" {
		if opts.SNP.TrustedRoots, err = readAMDRoots(f.amdRoots); err != nil {
			return err
		}
	}
	if f.ccel != "" {
		if opts.TDX.EventLog, err = os.ReadFile(f.ccel); err != nil {
			return err
		}
	}
	if f.fetchCerts {
		opts.SNP.Getter = trust.DefaultHTTPSGetter()
	}
	if f.intelRoot != "" {
		if opts.TDX.TrustedRoots, err = readCertPool(f.intelRoot); err != nil {
			return err
		}
	}
	var items []evidence.Item
	for _, a := range args {
		it, err := evidence.ParseItem(a, os.ReadFile)
		if err != nil {
			return err
		}
		items = append(items, it)
	}
	rep, err := evidence.Verify(m, items, opts)
	if f.asJSON {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(struct {
			Verified bool             `json:"verified"`
			Checks   []evidence.Check `json:"checks"`
		}{err == nil, rep.Checks}); jerr != nil {
			return jerr
		}
	} else {
		rep.Write(cmd.OutOrStdout())
	}
	if err != nil {
		return &ExitError{Code: 1, Err: err}
	}
	return nil
}

func loadManifestForVerify(f verifyFlags) (*manifest.Manifest, error) {
	if f.unsigned {
		b, err := os.ReadFile(f.manifest)
		if err != nil {
			return nil, err
		}
		logger().Warn("using an unsigned manifest", "path", f.manifest)
		return manifest.Decode(b)
	}
	if f.key == "" {
		return nil, errors.New("--key is required to verify the signed manifest (or --insecure-unsigned)")
	}
	s, err := verifySigned(f.manifest, f.key, f.known, f.at)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", f.manifest, err)
	}
	return s.Manifest, nil
}

func readPEMBlocks(path string) ([]*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*pem.Block
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		out = append(out, blk)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM blocks", path)
	}
	return out, nil
}

func readPublicKey(path string) (any, error) {
	blks, err := readPEMBlocks(path)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(blks[0].Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func readCertPool(path string) (*x509.CertPool, error) {
	blks, err := readPEMBlocks(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, b := range blks {
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		pool.AddCert(c)
	}
	return pool, nil
}

// readAMDRoots reads an AMD cert_chain PEM (ASK first, then ARK, as KDS
// serves it) and trusts it for the product line named in the ARK.
func readAMDRoots(path string) (map[string][]*trust.AMDRootCerts, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blks, err := readPEMBlocks(path)
	if err != nil || len(blks) != 2 {
		return nil, fmt.Errorf("%s: want 2 PEM certificates (ASK, ARK): %v", path, err)
	}
	ark, err := x509.ParseCertificate(blks[1].Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: ARK: %w", path, err)
	}
	line := trustProductLine(ark.Subject.CommonName)
	r := trust.AMDRootCertsProduct(line)
	if err := r.FromKDSCertBytes(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return map[string][]*trust.AMDRootCerts{line: {r}}, nil
}

// trustProductLine maps "ARK-Milan" to "Milan".
func trustProductLine(cn string) string {
	if len(cn) > 4 && cn[:4] == "ARK-" {
		return cn[4:]
	}
	return cn
}
