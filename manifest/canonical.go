package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// MaxManifestSize caps the manifest bytes any decoder accepts.
const MaxManifestSize = 16 << 20

// TimeLayout is the only accepted timestamp form: RFC 3339, UTC, whole
// seconds ("1970-01-01T00:00:00Z").
const TimeLayout = "2006-01-02T15:04:05Z"

// FormatTime renders t in TimeLayout.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// IssuedAt is the issued_at value of a manifest built at epoch.
func IssuedAt(epoch int64) string { return FormatTime(time.Unix(epoch, 0)) }

// NewValidity returns the validity block for a build at epoch: issued at
// the epoch and, if ttl > 0, expiring ttl later (rounded down to seconds).
func NewValidity(epoch int64, ttl time.Duration) *Validity {
	v := &Validity{IssuedAt: IssuedAt(epoch)}
	if ttl > 0 {
		v.ExpiresAt = FormatTime(time.Unix(epoch, 0).Add(ttl.Truncate(time.Second)))
	}
	return v
}

// marshal renders m in the canonical layout: encoding/json from the struct
// (field order fixed by the type, map keys sorted), no HTML escaping,
// two-space indent, LF line ends and one trailing newline.
func marshal(m *Manifest) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encoding manifest: %w", err)
	}
	return b.Bytes(), nil
}

// Encode validates m and returns its canonical bytes (the manifest.json
// content). The same value always gives the same bytes.
func Encode(m *Manifest) ([]byte, error) {
	b, err := marshal(m)
	if err != nil {
		return nil, err
	}
	if err := validate(m, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Compact returns the single-line form of canonical bytes, as embedded in
// the in-toto statement's predicate.
func Compact(canonical []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, canonical); err != nil {
		return nil
	}
	return b.Bytes()
}

// Digest returns "sha256:<hex>" of the canonical bytes of m: the identity
// that supersedes and revokes entries name.
func Digest(m *Manifest) (string, error) {
	b, err := Encode(m)
	if err != nil {
		return "", err
	}
	return digestBytes(b), nil
}

func digestBytes(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// Decode parses manifest bytes and fails closed: the bytes must conform to
// the v1 JSON Schema (no unknown fields anywhere), decode without unknown
// fields or trailing data, pass Validate, and be canonical, i.e. equal to
// Encode of the result (or to its Compact form).
func Decode(raw []byte) (*Manifest, error) {
	if len(raw) > MaxManifestSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrSchema, len(raw), MaxManifestSize)
	}
	if err := checkSchemaVersion(raw); err != nil {
		return nil, err
	}
	if err := ValidateSchema(raw); err != nil {
		return nil, err
	}
	m := new(Manifest)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSchema, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the manifest object", ErrSchema)
	}
	canon, err := Encode(m)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(canon, raw) && !bytes.Equal(Compact(canon), raw) {
		return nil, fmt.Errorf("%w: not in canonical form (first difference at byte %d)", ErrSchema, firstDiff(canon, raw))
	}
	return m, nil
}

// checkSchemaVersion reports a foreign or future schema by name before the
// full schema check buries it among other errors.
func checkSchemaVersion(raw []byte) error {
	var probe struct {
		Schema *string `json:"schema"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return fmt.Errorf("%w: %w", ErrSchema, err)
	}
	switch {
	case probe.Schema == nil:
		return fmt.Errorf("%w: field \"schema\" missing", ErrSchema)
	case *probe.Schema != SchemaVersion:
		return fmt.Errorf("%w: schema %q is not supported (want %q)", ErrSchema, *probe.Schema, SchemaVersion)
	}
	return nil
}

func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
