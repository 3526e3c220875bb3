package main

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/mkcvm/mkcvm/measure"
	"github.com/spf13/cobra"
)

func init() { addMeasureCommand(newMeasureSNPIDBlockCmd) }

type snpIDBlockFlags struct {
	measurement, idKey, authorKey, familyID, imageID, policy string
	guestSVN                                                 uint32
}

// newMeasureSNPIDBlockCmd mirrors sev-snp-measure's snp-create-id-block.py.
func newMeasureSNPIDBlockCmd() *cobra.Command {
	var f snpIDBlockFlags
	cmd := &cobra.Command{
		Use:   "snp-id-block --measurement B64 --idkey PEM --authorkey PEM",
		Short: "SNP ID block and ID auth (snp-create-id-block compatible)",
		Long: `snp-id-block signs an SNP ID block for a launch digest with an ECDSA P-384 ID
key, and the ID key with an author key, and prints them like sev-snp-measure's
snp-create-id-block.py: "id-block=<b64>,id-auth=<b64>" (the value for QEMU's
sev-snp-guest id-block/id-auth properties) and the two key digests a report
carries. Signatures are randomized, so output differs between runs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSNPIDBlock(cmd.OutOrStdout(), &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.measurement, "measurement", "", "guest launch measurement in base64 (required)")
	fl.StringVar(&f.idKey, "idkey", "", "ID private key, PEM (required)")
	fl.StringVar(&f.authorKey, "authorkey", "", "author private key, PEM (required)")
	fl.StringVar(&f.policy, "policy", "0x30000", "guest policy")
	fl.StringVar(&f.familyID, "family-id", "", "family ID, 16 bytes hex (default zero)")
	fl.StringVar(&f.imageID, "image-id", "", "image ID, 16 bytes hex (default zero)")
	fl.Uint32Var(&f.guestSVN, "guest-svn", 0, "guest security version number")
	return cmd
}

func runSNPIDBlock(w io.Writer, f *snpIDBlockFlags) error {
	if f.idKey == "" || f.authorKey == "" {
		return usageError("missing key files for id block")
	}
	ld, err := base64.StdEncoding.DecodeString(f.measurement)
	if err != nil || len(ld) != measure.SizeofSNPDigest {
		return usageError("--measurement: want %d bytes in base64", measure.SizeofSNPDigest)
	}
	policy, err := strconv.ParseUint(f.policy, 0, 64)
	if err != nil {
		return usageError("--policy %q: %w", f.policy, err)
	}
	b := &measure.IDBlock{LaunchDigest: measure.SNPDigest(ld), Version: measure.IDBlockVersion, GuestSVN: f.guestSVN, Policy: policy}
	for _, id := range []struct {
		s   string
		dst *[16]byte
	}{{f.familyID, &b.FamilyID}, {f.imageID, &b.ImageID}} {
		if id.s == "" {
			continue
		}
		v, err := hex.DecodeString(id.s)
		if err != nil || len(v) != 16 {
			return usageError("ID %q: want 16 bytes hex", id.s)
		}
		*id.dst = [16]byte(v)
	}
	idKey, err := readECKey(f.idKey)
	if err != nil {
		return err
	}
	authorKey, err := readECKey(f.authorKey)
	if err != nil {
		return err
	}
	return printSNPIDBlock(w, b, idKey, authorKey)
}

func printSNPIDBlock(w io.Writer, b *measure.IDBlock, idKey, authorKey *ecdsa.PrivateKey) error {
	a, err := measure.SignIDBlock(b, idKey, authorKey, rand.Reader)
	if err != nil {
		return err
	}
	blk, _ := b.MarshalBinary()
	auth, _ := a.MarshalBinary()
	idDigest, _ := measure.SNPKeyDigest(&idKey.PublicKey)
	authDigest, _ := measure.SNPKeyDigest(&authorKey.PublicKey)
	enc := base64.StdEncoding.EncodeToString
	_, err = fmt.Fprintf(w, "id-block=%s,id-auth=%s\nid_key_hash: %s\nauthor_key: %s\n", enc(blk), enc(auth), enc(idDigest[:]), enc(authDigest[:]))
	return err
}

// readECKey reads a PEM EC private key (SEC 1 or PKCS #8).
func readECKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &ExitError{Code: 1, Err: err}
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: no PEM block", path)}
	}
	if k, err := x509.ParseECPrivateKey(blk.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s: %w", path, err)}
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, &ExitError{Code: 1, Err: fmt.Errorf("%s does not contain an EC private key", path)}
	}
	return ek, nil
}
