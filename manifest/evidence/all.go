package evidence

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/mkcvm/mkcvm/manifest"
)

// Kind names an evidence format.
type Kind string

// Evidence kinds.
const (
	KindTPM Kind = "tpm" // TPMEvidence JSON
	KindSNP Kind = "snp" // SNP report [+ certificate table]
	KindTDX Kind = "tdx" // TDX quote v4
)

// Item is one piece of evidence.
type Item struct {
	Name string // file name, for messages
	Kind Kind
	Data []byte
}

// Detect guesses the kind of evidence bytes: TPM evidence JSON by its kind
// field, a TDX v4 quote by version 4 and TEE type 0x81 (TDX DCAP Quote
// Generation Library, Appendix 3, Quote Header), an SNP report by version
// 2..5 and its size (SEV-SNP ABI Table 22).
func Detect(b []byte) (Kind, error) {
	trimmed := bytes.TrimSpace(b)
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")) && isRunnerResponse(b):
		return KindRunner, nil
	case bytes.HasPrefix(trimmed, []byte("{")) && bytes.Contains(b, []byte(TPMKind)):
		return KindTPM, nil
	case len(b) >= 8 && binary.LittleEndian.Uint16(b[0:2]) == 4 && binary.LittleEndian.Uint32(b[4:8]) == 0x81:
		return KindTDX, nil
	case len(b) >= 0x4a0 && binary.LittleEndian.Uint32(b[0:4]) >= 2 && binary.LittleEndian.Uint32(b[0:4]) <= 5:
		return KindSNP, nil
	}
	return "", fmt.Errorf("%w: unrecognized evidence format (prefix the file with tpm:, snp: or tdx:)", ErrEvidence)
}

// Options select the shape and carry each platform's trust inputs.
type Options struct {
	// Shape names the manifest shape; empty tries every shape of the
	// evidence's platform and accepts the first that matches fully.
	Shape string
	TPM   TPMOptions
	SNP   SNPOptions
	TDX   TDXOptions
}

// Verify checks every item against m. The report lists the checks of the
// selected (or best-matching) shape per item; the error is non-nil when
// any item fails.
func Verify(m *manifest.Manifest, items []Item, opts Options) (*Report, error) {
	all := &Report{}
	var errs []error
	for _, it := range items {
		r, err := verifyItem(m, it, opts)
		all.Checks = append(all.Checks, r.Checks...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", it.Name, err))
		}
	}
	return all, errors.Join(errs...)
}

func verifyItem(m *manifest.Manifest, it Item, opts Options) (*Report, error) {
	if it.Kind == KindRunner {
		return verifyRunner(m, it, opts)
	}
	platform := map[Kind]string{KindTPM: "tpm", KindSNP: "snp", KindTDX: "tdx"}[it.Kind]
	var shapes []*manifest.Shape
	for i := range m.Shapes {
		s := &m.Shapes[i]
		if s.Platform == platform && (opts.Shape == "" || s.Name == opts.Shape) {
			shapes = append(shapes, s)
		}
	}
	if len(shapes) == 0 {
		return &Report{}, fmt.Errorf("%w: manifest has no %s shape%s", ErrMismatch, platform, nameSuffix(opts.Shape))
	}
	var first *Report
	for _, s := range shapes {
		r, err := verifyShape(it, s, opts)
		if err != nil {
			return &Report{}, err
		}
		for i := range r.Checks {
			r.Checks[i].What = s.Name + " " + r.Checks[i].What
		}
		if r.Err() == nil {
			return r, nil
		}
		if first == nil {
			first = r
		}
	}
	return first, first.Err()
}

func verifyShape(it Item, s *manifest.Shape, opts Options) (*Report, error) {
	switch it.Kind {
	case KindTPM:
		ev, err := ParseTPMEvidence(it.Data)
		if err != nil {
			return nil, err
		}
		return VerifyTPM(ev, s, opts.TPM), nil
	case KindSNP:
		return VerifySNP(it.Data, s, opts.SNP), nil
	case KindTDX:
		return VerifyTDX(it.Data, s, opts.TDX), nil
	}
	return nil, fmt.Errorf("%w: unknown evidence kind %q", ErrEvidence, it.Kind)
}

func nameSuffix(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf(" named %q", s)
}

// ParseItem reads "kind:path"-style arguments: it splits an optional
// tpm:/snp:/tdx:/runner: prefix off name and detects the kind otherwise.
func ParseItem(arg string, read func(string) ([]byte, error)) (Item, error) {
	kind, path := Kind(""), arg
	if k, p, ok := strings.Cut(arg, ":"); ok && (k == string(KindTPM) || k == string(KindSNP) || k == string(KindTDX) || k == string(KindRunner)) {
		kind, path = Kind(k), p
	}
	b, err := read(path)
	if err != nil {
		return Item{}, err
	}
	if kind == "" {
		if kind, err = Detect(b); err != nil {
			return Item{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	return Item{Name: path, Kind: kind, Data: b}, nil
}
