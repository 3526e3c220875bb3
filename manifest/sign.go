package manifest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"
)

// Sign wraps m in an in-toto statement (subjects: the artifact digests and
// the OCI bundle manifest digest; predicate: the canonical manifest), signs
// it as a DSSE envelope with key (ECDSA P-256 or Ed25519), and returns the Sigstore bundle v0.3 JSON
// that `cosign verify-blob-attestation --bundle` reads. Nothing touches the
// network. ECDSA signatures use rand, so the bundle differs per call while
// the signed payload does not.
func Sign(m *Manifest, key crypto.Signer, rand io.Reader) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	payload, err := NewStatement(m)
	if err != nil {
		return nil, err
	}
	kp := &fileKeypair{key: key, rand: rand}
	pb, err := sign.Bundle(&sign.DSSEData{Data: payload, PayloadType: PayloadType}, kp, sign.BundleOptions{Context: context.Background()})
	if err != nil {
		return nil, fmt.Errorf("signing manifest: %w", err)
	}
	out, err := protojson.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("encoding bundle: %w", err)
	}
	return append(out, '\n'), nil
}

// fileKeypair adapts a key read from a file to sigstore-go's sign.Keypair.
type fileKeypair struct {
	key  crypto.Signer
	rand io.Reader
}

func (k *fileKeypair) ed25519() bool { _, ok := k.key.(ed25519.PrivateKey); return ok }

var _ sign.Keypair = (*fileKeypair)(nil)

func (k *fileKeypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	if k.ed25519() {
		return protocommon.HashAlgorithm_SHA2_512
	}
	return protocommon.HashAlgorithm_SHA2_256
}

func (k *fileKeypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	if k.ed25519() {
		return protocommon.PublicKeyDetails_PKIX_ED25519
	}
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

// GetHint is base64(sha256(PKIX public key)), as sigstore-go's own keys.
func (k *fileKeypair) GetHint() []byte {
	der, err := x509.MarshalPKIXPublicKey(k.key.Public())
	if err != nil {
		return nil
	}
	s := sha256.Sum256(der)
	return []byte(base64.StdEncoding.EncodeToString(s[:]))
}

func (k *fileKeypair) GetKeyAlgorithm() string {
	if k.ed25519() {
		return "ED25519"
	}
	return "ECDSA"
}

func (k *fileKeypair) GetPublicKey() crypto.PublicKey { return k.key.Public() }

func (k *fileKeypair) GetPublicKeyPem() (string, error) {
	b, err := MarshalPublicKey(k.key.Public())
	return string(b), err
}

// SignData signs data (the DSSE pre-authentication encoding): ECDSA over
// its SHA-256 (ASN.1 signature), pure Ed25519 over the bytes. It returns
// the signature and what was signed.
func (k *fileKeypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	if ek, ok := k.key.(ed25519.PrivateKey); ok {
		return ed25519.Sign(ek, data), data, nil
	}
	ek, ok := k.key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %T", ErrKey, k.key)
	}
	d := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(k.rand, ek, d[:])
	if err != nil {
		return nil, nil, err
	}
	return sig, d[:], nil
}
