package builder

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/foxboron/go-uefi/authenticode"
	"github.com/foxboron/go-uefi/efi/signature"
	"github.com/foxboron/go-uefi/efi/util"
	"github.com/foxboron/go-uefi/pkcs7"

	"github.com/mkcvm/mkcvm/ovmf"
	"github.com/mkcvm/mkcvm/uki"
)

// ErrKeyMismatch means a signing key is not the key of its certificate.
var ErrKeyMismatch = errors.New("private key does not match certificate")

// SBSigner is a Secure Boot signing identity: an RSA key (UEFI 2.10
// §32.5.3.2 requires RSA-2048 with SHA-256 for db-verified images) and its
// X.509 certificate.
type SBSigner struct {
	Key  *rsa.PrivateKey
	Cert *x509.Certificate
}

// ParseSBSigner decodes a PEM private key (PKCS#8 or PKCS#1) and a PEM or
// DER certificate and checks that they belong together. keyName and
// certName name the inputs in errors.
func ParseSBSigner(keyName string, keyPEM []byte, certName string, certData []byte) (*SBSigner, error) {
	cert, err := parseCert(certName, certData)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("secure boot key %q: no PEM block", keyName)
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
		if key, err = x509.ParsePKCS1PrivateKey(kb.Bytes); err != nil {
			return nil, fmt.Errorf("secure boot key %q: neither PKCS#8 nor PKCS#1: %w", keyName, err)
		}
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("secure boot key %q: %T, want an RSA key", keyName, key)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !rk.PublicKey.Equal(pub) {
		return nil, fmt.Errorf("secure boot key %q, certificate %q: %w", keyName, certName, ErrKeyMismatch)
	}
	return &SBSigner{Key: rk, Cert: cert}, nil
}

func parseCert(name string, data []byte) (*x509.Certificate, error) {
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	c, err := x509.ParseCertificate(data)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", name, err)
	}
	return c, nil
}

// SignPE returns image with an Authenticode signature appended (PE/COFF
// attribute certificate table, WIN_CERT_TYPE_PKCS_SIGNED_DATA). The
// PKCS#7 SignerInfo has no authenticated attributes, so it carries no
// signing time, and RSA PKCS#1 v1.5 is deterministic: the same inputs give
// the same bytes.
func (s *SBSigner) SignPE(image []byte) ([]byte, error) {
	pe, err := authenticode.Parse(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("parsing image for Authenticode: %w", err)
	}
	if _, err := pe.Sign(s.Key, s.Cert, pkcs7.NoAttr()); err != nil {
		return nil, fmt.Errorf("signing image: %w", err)
	}
	// go-uefi's own Verify cannot check attribute-less SignerInfos (it
	// dereferences the missing attributes); tests verify with sbverify and
	// osslsigncode instead.
	signed := pe.Bytes()
	if err := uki.SetChecksum("signed image", signed); err != nil {
		return nil, err
	}
	return signed, nil
}

// AuthenticodeSHA256 returns the Authenticode digest of a PE image as
// go-uefi computes it (which pads the hashed data to 8 bytes).
func AuthenticodeSHA256(image []byte) ([]byte, error) {
	pe, err := authenticode.Parse(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("parsing image for Authenticode: %w", err)
	}
	return pe.Hash(crypto.SHA256), nil
}

// X509SignatureList encodes an EFI_SIGNATURE_LIST of type EFI_CERT_X509_GUID
// holding cert, owned by owner (UEFI 2.10 §32.4.1).
func X509SignatureList(owner ovmf.GUID, cert *x509.Certificate) []byte {
	sl := signature.NewSignatureList(signature.CERT_X509_GUID)
	// go-uefi writes SignatureData.Owner as a little-endian struct, so
	// decode the on-disk (mixed-endian) bytes the same way; its
	// util.BytesToGUID reads big-endian and would swap the first fields.
	var g util.EFIGUID
	_, _ = binary.Decode(owner[:], binary.LittleEndian, &g)
	// AppendBytes only fails for duplicates, impossible on a new list.
	_ = sl.AppendBytes(g, cert.Raw)
	return sl.Bytes()
}
