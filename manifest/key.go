package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
)

// Keys are ECDSA P-256 (the default) or Ed25519, in PEM: private keys as
// PKCS #8 ("PRIVATE KEY", or SEC 1 "EC PRIVATE KEY" for ECDSA), public
// keys as PKIX ("PUBLIC KEY"), the form cosign's --key reads. Both sign
// DSSE envelopes that sigstore-go v1.3.0 and cosign v3.1.3 verify.

// Key types for GenerateKey.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyEd25519   = "ed25519"
)

// GenerateKey returns a new key of the given type (KeyECDSAP256 if empty)
// as PKCS #8 and PKIX PEM.
func GenerateKey(rand io.Reader, keyType ...string) (privPEM, pubPEM []byte, err error) {
	var k crypto.Signer
	switch t := append(keyType, KeyECDSAP256)[0]; t {
	case KeyECDSAP256, "":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand)
	case KeyEd25519:
		_, k, err = ed25519.GenerateKey(rand)
	default:
		return nil, nil, fmt.Errorf("%w: key type %q (want %s or %s)", ErrKey, t, KeyECDSAP256, KeyEd25519)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generating key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding private key: %w", err)
	}
	pub, err := MarshalPublicKey(k.Public())
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pub, nil
}

// MarshalPublicKey encodes pub as PKIX PEM.
func MarshalPublicKey(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// checkKey accepts ECDSA P-256 and Ed25519 keys.
func checkKey(k any) error {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PrivateKey, ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: %T is neither an ECDSA P-256 nor an Ed25519 key", ErrKey, k)
}

// ParsePrivateKey reads a PEM ECDSA P-256 or Ed25519 private key.
func ParsePrivateKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKey)
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("%w: PEM block %q is not an unencrypted private key", ErrKey, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if err := checkKey(k); err != nil {
		return nil, err
	}
	return k.(crypto.Signer), nil
}

// ParsePublicKey reads a PEM ECDSA P-256 or Ed25519 public key. A private
// key file is accepted too and yields its public half.
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKey)
	}
	if blk.Type != "PUBLIC KEY" {
		k, err := ParsePrivateKey(b)
		if err != nil {
			return nil, err
		}
		return k.Public(), nil
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if err := checkKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

// KeyID is the hex sha256 of the PKIX encoding of pub.
func KeyID(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}
