package manifest

import "errors"

// Sentinel errors callers branch on. Each is wrapped with the detail
// (field, digest, time) that explains the rejection.
var (
	// ErrSchema: the manifest does not conform to schema v1 (including
	// unknown fields and non-canonical encodings).
	ErrSchema = errors.New("manifest schema violation")
	// ErrInvalid: the manifest conforms to the schema but is inconsistent
	// (duplicate names, issued_at not derived from the epoch, ...).
	ErrInvalid = errors.New("invalid manifest")
	// ErrEnvelope: the Sigstore bundle, DSSE envelope or in-toto statement
	// is malformed or not of the expected type.
	ErrEnvelope = errors.New("malformed signed manifest")
	// ErrSignature: the signature does not verify with the trusted key.
	ErrSignature = errors.New("signature verification failed")
	// ErrSubject: the in-toto subjects do not match the manifest artifacts.
	ErrSubject = errors.New("statement subjects do not match manifest")
	// ErrNotYetValid: the verification time is before issued_at.
	ErrNotYetValid = errors.New("manifest not yet valid")
	// ErrExpired: the verification time is at or after expires_at.
	ErrExpired = errors.New("manifest expired")
	// ErrRevoked: a trusted manifest revokes this one.
	ErrRevoked = errors.New("manifest revoked")
	// ErrSuperseded: a trusted manifest supersedes this one.
	ErrSuperseded = errors.New("manifest superseded")
	// ErrKey: the key file cannot be used.
	ErrKey = errors.New("unusable key")
	// ErrArtifact: an artifact's bytes do not match the manifest.
	ErrArtifact = errors.New("artifact does not match manifest")
)
