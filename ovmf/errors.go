package ovmf

import (
	"errors"
	"fmt"
)

// FormatError reports malformed firmware bytes. It names the input (usually
// a file name), the byte offset in the input where the problem sits, the
// spec field and what is wrong with it.
type FormatError struct {
	Input  string // input name, e.g. "OVMF.fd"
	Offset int64  // byte offset in the input
	Field  string // spec field, e.g. "SEV metadata section[2].Length"
	Reason string // what is wrong, e.g. "0x1001 not page-aligned"
	Err    error  // optional underlying error or sentinel
}

var _ error = (*FormatError)(nil)

// Error formats "<input>: offset 0x<hex>: <field>: <reason>".
func (e *FormatError) Error() string {
	msg := fmt.Sprintf("%s: offset 0x%x: %s: %s", e.Input, e.Offset, e.Field, e.Reason)
	if e.Err != nil && e.Reason == "" {
		msg = fmt.Sprintf("%s: offset 0x%x: %s: %v", e.Input, e.Offset, e.Field, e.Err)
	}
	return msg
}

// Unwrap returns the underlying error.
func (e *FormatError) Unwrap() error { return e.Err }

// Sentinels callers branch on. They are wrapped in a *FormatError.
var (
	// ErrNoFooterTable means the image has no OVMF footer GUID table (the
	// footer GUID is not where the reset vector puts it).
	ErrNoFooterTable = errors.New("no OVMF footer GUID table")
	// ErrNoSEVMetadata means the footer table has no SEV metadata entry, so
	// the firmware cannot be launched (or measured) as an SEV-SNP guest.
	ErrNoSEVMetadata = errors.New("no SEV metadata")
	// ErrNotFound means a required footer table entry is absent.
	ErrNotFound = errors.New("footer table entry not found")
)

func formatErr(input string, off int64, field, reason string, args ...any) *FormatError {
	return &FormatError{Input: input, Offset: off, Field: field, Reason: fmt.Sprintf(reason, args...)}
}
