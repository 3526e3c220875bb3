package manifest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"
)

// MaxBundleSize caps the signed-manifest bundle bytes a parser accepts.
const MaxBundleSize = 32 << 20

// SignedManifest is a parsed (not yet verified) Sigstore bundle carrying an
// mkcvm statement.
type SignedManifest struct {
	Bundle    *sgbundle.Bundle
	Payload   []byte // DSSE payload: the statement bytes
	Signature []byte // the one DSSE signature (ASN.1 ECDSA)
	Statement *Statement
	Manifest  *Manifest
	// Digest is "sha256:<hex>" of the manifest's canonical bytes.
	Digest string
}

// ParseBundle decodes a Sigstore bundle (protobuf JSON, unknown fields
// rejected) that holds a DSSE envelope with exactly one signature over an
// in-toto statement whose predicate is an mkcvm manifest. It checks
// structure only; Verify checks the signature.
func ParseBundle(b []byte) (*SignedManifest, error) {
	if len(b) > MaxBundleSize {
		return nil, fmt.Errorf("%w: bundle is %d bytes, limit %d", ErrEnvelope, len(b), MaxBundleSize)
	}
	pb := new(protobundle.Bundle)
	if err := protojson.Unmarshal(b, pb); err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrEnvelope, err)
	}
	bun, err := sgbundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("%w: bundle: %w", ErrEnvelope, err)
	}
	if pk := pb.GetVerificationMaterial().GetPublicKey(); pk == nil {
		return nil, fmt.Errorf("%w: bundle verification material is not a public-key hint", ErrEnvelope)
	}
	env := pb.GetDsseEnvelope()
	switch {
	case env == nil:
		return nil, fmt.Errorf("%w: bundle content is not a DSSE envelope", ErrEnvelope)
	case env.PayloadType != PayloadType:
		return nil, fmt.Errorf("%w: DSSE payloadType %q, want %q", ErrEnvelope, env.PayloadType, PayloadType)
	case len(env.Signatures) != 1:
		return nil, fmt.Errorf("%w: DSSE envelope has %d signatures, want 1", ErrEnvelope, len(env.Signatures))
	}
	st, m, err := ParseStatement(env.Payload)
	if err != nil {
		return nil, err
	}
	canon, err := Encode(m)
	if err != nil {
		return nil, err
	}
	return &SignedManifest{
		Bundle: bun, Payload: env.Payload, Signature: env.Signatures[0].Sig,
		Statement: st, Manifest: m, Digest: digestBytes(canon),
	}, nil
}

// pae is the DSSE v1 pre-authentication encoding
// (https://github.com/secure-systems-lab/dsse/blob/v1.0.2/protocol.md).
func pae(payloadType string, payload []byte) []byte {
	return fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(payload), payload)
}

// VerifySignature checks the DSSE signature with pub twice: directly over
// the PAE, and through sigstore-go's verifier with the key as the only
// trusted material (no transparency log, no timestamps).
func (s *SignedManifest) VerifySignature(pub crypto.PublicKey) error {
	msg := pae(PayloadType, s.Payload)
	var ok bool
	var v signature.Verifier
	var err error
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(k, d[:], s.Signature)
		v, err = signature.LoadECDSAVerifier(k, crypto.SHA256)
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, s.Signature)
		v, err = signature.LoadED25519Verifier(k)
	default:
		return fmt.Errorf("%w: %T", ErrKey, pub)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	if !ok {
		return fmt.Errorf("%w: DSSE signature does not verify with key %s", ErrSignature, KeyID(pub))
	}
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	})
	sv, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return fmt.Errorf("creating verifier: %w", err)
	}
	if _, err := sv.Verify(s.Bundle, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithKey())); err != nil {
		return fmt.Errorf("%w: sigstore bundle: %w", ErrSignature, err)
	}
	return nil
}

// CheckValidity rejects a manifest outside its validity window at now.
// A manifest without a validity block is valid from its epoch on.
func (s *SignedManifest) CheckValidity(now time.Time) error {
	if now.IsZero() {
		return errors.New("checking validity: no verification time given")
	}
	iss := time.Unix(s.Manifest.Epoch, 0)
	if now.Before(iss) {
		return fmt.Errorf("%w: issued at %s, now is %s", ErrNotYetValid, FormatTime(iss), FormatTime(now))
	}
	if v := s.Manifest.Validity; v != nil && v.ExpiresAt != "" {
		exp, err := time.Parse(TimeLayout, v.ExpiresAt)
		if err != nil {
			return fmt.Errorf("%w: validity.expires_at: %w", ErrInvalid, err)
		}
		if !now.Before(exp) {
			return fmt.Errorf("%w: expired at %s, now is %s", ErrExpired, v.ExpiresAt, FormatTime(now))
		}
	}
	return nil
}

// CheckRotation rejects s if any of the trusted manifests (already
// verified with the same key) revokes or supersedes it.
func (s *SignedManifest) CheckRotation(trusted []*SignedManifest) error {
	var errs []error
	for _, t := range trusted {
		if t.Digest == s.Digest {
			continue
		}
		if slices.Contains(t.Manifest.Revokes, s.Digest) {
			errs = append(errs, fmt.Errorf("%w: %s is revoked by %s (recipe %q, epoch %d)", ErrRevoked, s.Digest, t.Digest, t.Manifest.Recipe.Name, t.Manifest.Epoch))
		}
		if slices.Contains(t.Manifest.Supersedes, s.Digest) {
			errs = append(errs, fmt.Errorf("%w: %s is superseded by %s (recipe %q, epoch %d)", ErrSuperseded, s.Digest, t.Digest, t.Manifest.Recipe.Name, t.Manifest.Epoch))
		}
	}
	return errors.Join(errs...)
}

// VerifyOptions control Verify. Now is required (the caller's clock).
type VerifyOptions struct {
	Now time.Time
	// Others are further signed manifests (bundle JSON) known to the
	// verifier; those that verify with the same key take part in the
	// supersedes/revokes check. One that does not verify is an error.
	Others [][]byte
}

// Verify parses and verifies a signed manifest bundle with pub and fails
// closed: malformed or non-canonical content, unknown fields, a foreign
// key or a broken signature, subjects that differ from the artifacts, a
// manifest outside its validity window, or one revoked or superseded by a
// trusted manifest in opts.Others.
func Verify(bundleJSON []byte, pub crypto.PublicKey, opts VerifyOptions) (*SignedManifest, error) {
	s, err := ParseBundle(bundleJSON)
	if err != nil {
		return nil, err
	}
	if err := s.VerifySignature(pub); err != nil {
		return nil, err
	}
	if err := s.CheckValidity(opts.Now); err != nil {
		return nil, err
	}
	trusted, err := verifiedOthers(opts.Others, pub)
	if err != nil {
		return nil, err
	}
	if err := s.CheckRotation(trusted); err != nil {
		return nil, err
	}
	return s, nil
}

// verifiedOthers parses the other signed manifests whose supersedes and
// revokes entries apply, and checks each is signed by pub.
func verifiedOthers(others [][]byte, pub crypto.PublicKey) ([]*SignedManifest, error) {
	var out []*SignedManifest
	for i, o := range others {
		t, err := ParseBundle(o)
		if err == nil {
			err = t.VerifySignature(pub)
		}
		if err != nil {
			return nil, fmt.Errorf("other manifest %d: %w", i, err)
		}
		out = append(out, t)
	}
	return out, nil
}
