package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// in-toto Statement v1 constants
// (https://github.com/in-toto/attestation/blob/v1.2.0/spec/v1/statement.md).
const (
	StatementType = "https://in-toto.io/Statement/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// PredicateType identifies an mkcvm manifest as the predicate.
	PredicateType = "https://mkcvm.dev/attestation/manifest/v1"
	// OCISubjectName names the subject that carries the digest of the OCI
	// bundle manifest (see BundleOCIManifest), so registry verifiers
	// (cosign verify-attestation) can match the image digest.
	OCISubjectName = "oci-bundle"
)

// Statement is an in-toto Statement v1, encoded with encoding/json in this
// field order. Predicate holds the manifest in compact canonical form.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is one in-toto ResourceDescriptor restricted to name + digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Subjects returns the statement subjects for m: each artifact by name and
// sha256, then the OCI bundle manifest digest.
func Subjects(m *Manifest) ([]Subject, error) {
	if len(m.Artifacts) == 0 {
		return nil, fmt.Errorf("%w: no artifacts to sign for", ErrInvalid)
	}
	subs := make([]Subject, 0, len(m.Artifacts)+1)
	for _, a := range m.Artifacts {
		subs = append(subs, Subject{Name: a.Name, Digest: map[string]string{"sha256": a.SHA256}})
	}
	_, d, err := BundleOCIManifest(m)
	if err != nil {
		return nil, err
	}
	subs = append(subs, Subject{Name: OCISubjectName, Digest: map[string]string{"sha256": d.Digest.Hex}})
	return subs, nil
}

// NewStatement wraps canonical manifest bytes in an in-toto statement and
// returns the statement's bytes (the DSSE payload).
func NewStatement(m *Manifest) ([]byte, error) {
	canon, err := Encode(m)
	if err != nil {
		return nil, err
	}
	subs, err := Subjects(m)
	if err != nil {
		return nil, err
	}
	st := Statement{Type: StatementType, Subject: subs, PredicateType: PredicateType, Predicate: Compact(canon)}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(st); err != nil {
		return nil, fmt.Errorf("encoding statement: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ParseStatement decodes a DSSE payload as an mkcvm statement and its
// manifest, failing closed on unknown statement fields, a foreign
// statement or predicate type, a non-canonical predicate, or subjects that
// differ from the manifest's artifacts.
func ParseStatement(payload []byte) (*Statement, *Manifest, error) {
	st := new(Statement)
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(st); err != nil {
		return nil, nil, fmt.Errorf("%w: statement: %w", ErrEnvelope, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("%w: statement: trailing data", ErrEnvelope)
	}
	if st.Type != StatementType {
		return nil, nil, fmt.Errorf("%w: statement _type %q, want %q", ErrEnvelope, st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return nil, nil, fmt.Errorf("%w: predicateType %q, want %q", ErrEnvelope, st.PredicateType, PredicateType)
	}
	m, err := Decode(st.Predicate)
	if err != nil {
		return nil, nil, fmt.Errorf("predicate: %w", err)
	}
	want, err := Subjects(m)
	if err != nil {
		return nil, nil, err
	}
	if !slices.EqualFunc(st.Subject, want, subjectEqual) {
		return nil, nil, fmt.Errorf("%w: got %s, want %s", ErrSubject, subjectList(st.Subject), subjectList(want))
	}
	return st, m, nil
}

func subjectEqual(a, b Subject) bool {
	return a.Name == b.Name && len(a.Digest) == len(b.Digest) && a.Digest["sha256"] == b.Digest["sha256"]
}

func subjectList(s []Subject) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, x := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=sha256:%s", x.Name, x.Digest["sha256"])
	}
	b.WriteByte(']')
	return b.String()
}
