package manifest

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// Validate checks m against the v1 JSON Schema and the rules the schema
// cannot express. It reports every problem, joined.
func Validate(m *Manifest) error {
	b, err := marshal(m)
	if err != nil {
		return err
	}
	return validate(m, b)
}

func validate(m *Manifest, encoded []byte) error {
	if err := ValidateSchema(encoded); err != nil {
		return err
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...)))
	}
	if v := m.Validity; v != nil {
		if want := IssuedAt(m.Epoch); v.IssuedAt != want {
			bad("validity.issued_at", "%s is not the build epoch %d (%s)", v.IssuedAt, m.Epoch, want)
		}
		if v.ExpiresAt != "" {
			iss, err1 := time.Parse(TimeLayout, v.IssuedAt)
			exp, err2 := time.Parse(TimeLayout, v.ExpiresAt)
			switch {
			case err1 != nil || err2 != nil:
				bad("validity", "unparsable time (want %s)", TimeLayout)
			case !exp.After(iss):
				bad("validity.expires_at", "%s is not after issued_at %s", v.ExpiresAt, v.IssuedAt)
			}
		}
	}
	dupes(bad, "inputs", len(m.Inputs), func(i int) string { return m.Inputs[i].Name })
	dupes(bad, "artifacts", len(m.Artifacts), func(i int) string { return m.Artifacts[i].Name })
	dupes(bad, "shapes", len(m.Shapes), func(i int) string { return m.Shapes[i].Name })
	dupes(bad, "supersedes", len(m.Supersedes), func(i int) string { return m.Supersedes[i] })
	dupes(bad, "revokes", len(m.Revokes), func(i int) string { return m.Revokes[i] })
	for i, s := range m.Shapes {
		validateShape(bad, fmt.Sprintf("shapes[%d] %q", i, s.Name), &s)
	}
	return errors.Join(errs...)
}

func dupes(bad func(string, string, ...any), field string, n int, key func(int) string) {
	seen := make(map[string]int, n)
	for i := range n {
		k := key(i)
		if j, ok := seen[k]; ok {
			bad(fmt.Sprintf("%s[%d]", field, i), "duplicate %q (also at [%d])", k, j)
			continue
		}
		seen[k] = i
	}
}

func validateShape(bad func(string, string, ...any), where string, s *Shape) {
	if s.TDX != nil {
		for i := range 4 {
			if s.TDX.RTMRBasis[i] != "not-pinned" && s.TDX.RTMR[i] == "" {
				bad(where+".tdx.rtmr["+strconv.Itoa(i)+"]", "empty but basis is %q", s.TDX.RTMRBasis[i])
			}
		}
	}
	if s.TPM != nil {
		banks := slices.Sorted(maps.Keys(s.TPM.PCRs))
		for _, bank := range banks {
			for _, idx := range slices.Sorted(maps.Keys(s.TPM.PCRs[bank])) {
				if _, ok := s.TPM.Basis[idx]; !ok {
					bad(where+".tpm.pcrs."+bank+"."+idx, "has no basis entry")
				}
				if want := bankHexLen(bank); len(s.TPM.PCRs[bank][idx]) != want {
					bad(where+".tpm.pcrs."+bank+"."+idx, "length %d, want %d hex digits for %s", len(s.TPM.PCRs[bank][idx]), want, bank)
				}
			}
		}
	}
}

func bankHexLen(bank string) int {
	switch bank {
	case "sha1":
		return 40
	case "sha256":
		return 64
	case "sha384":
		return 96
	case "sha512":
		return 128
	}
	return 0
}
