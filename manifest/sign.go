package manifest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
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
// it as a DSSE envelope with key, and returns the Sigstore bundle v0.3 JSON
// that `cosign verify-blob-attestation --bundle` reads. Nothing touches the
// network. ECDSA signatures use rand, so the bundle differs per call while
// the signed payload does not.
func Sign(m *Manifest, key *ecdsa.PrivateKey, rand io.Reader) ([]byte, error) {
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

// fileKeypair adapts a P-256 key read from a file to sigstore-go's
// sign.Keypair.
type fileKeypair struct {
	key  *ecdsa.PrivateKey
	rand io.Reader
}

var _ sign.Keypair = (*fileKeypair)(nil)

func (k *fileKeypair) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

func (k *fileKeypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

// GetHint is base64(sha256(PKIX public key)), as sigstore-go's own keys.
func (k *fileKeypair) GetHint() []byte {
	der, err := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
	if err != nil {
		return nil
	}
	s := sha256.Sum256(der)
	return []byte(base64.StdEncoding.EncodeToString(s[:]))
}

func (k *fileKeypair) GetKeyAlgorithm() string        { return "ECDSA" }
func (k *fileKeypair) GetPublicKey() crypto.PublicKey { return &k.key.PublicKey }

func (k *fileKeypair) GetPublicKeyPem() (string, error) {
	b, err := MarshalPublicKey(&k.key.PublicKey)
	return string(b), err
}

// SignData signs sha256(data) (data is the DSSE pre-authentication
// encoding) and returns the ASN.1 signature and the digest.
func (k *fileKeypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	d := sha256.Sum256(data)
	sig, err := ecdsa.SignASN1(k.rand, k.key, d[:])
	if err != nil {
		return nil, nil, err
	}
	return sig, d[:], nil
}
