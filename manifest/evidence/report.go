package evidence

import (
	"errors"
	"fmt"
	"io"
)

// ErrMismatch marks evidence that is authentic but differs from the
// manifest; ErrEvidence marks evidence that is malformed or not authentic.
var (
	ErrMismatch = errors.New("evidence does not match the manifest")
	ErrEvidence = errors.New("invalid evidence")
)

// Check is one compared value.
type Check struct {
	Evidence string `json:"evidence"`         // platform: tpm, snp, tdx, runner
	What     string `json:"what"`             // "vtpm PCR4 sha256", "snp-4 MEASUREMENT", ...
	Want     string `json:"want,omitempty"`   // reference value ("" if not applicable)
	Got      string `json:"got,omitempty"`    // evidence value
	OK       bool   `json:"ok"`               //
	Detail   string `json:"detail,omitempty"` // explanation
}

// Report collects the checks of one verification.
type Report struct {
	Checks []Check
}

func (r *Report) add(c Check) { r.Checks = append(r.Checks, c) }

// Err returns the failed checks joined, nil if all passed.
func (r *Report) Err() error {
	var errs []error
	for _, c := range r.Checks {
		if c.OK {
			continue
		}
		msg := c.What
		if c.Detail != "" {
			msg += ": " + c.Detail
		}
		if c.Want != "" || c.Got != "" {
			msg += fmt.Sprintf(" (manifest %s, evidence %s)", orNone(c.Want), orNone(c.Got))
		}
		errs = append(errs, fmt.Errorf("%w: %s: %s", ErrMismatch, c.Evidence, msg))
	}
	return errors.Join(errs...)
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Write prints the report as a table.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "%-8s %-28s %-5s %s\n", "EVIDENCE", "VALUE", "MATCH", "DETAIL")
	for _, c := range r.Checks {
		ok := "yes"
		if !c.OK {
			ok = "NO"
		}
		d := c.Detail
		if d == "" && c.Want != "" {
			d = short(c.Want)
			if !c.OK {
				d = "manifest " + short(c.Want) + " evidence " + short(c.Got)
			}
		}
		fmt.Fprintf(w, "%-8s %-28s %-5s %s\n", c.Evidence, c.What, ok, d)
	}
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}
