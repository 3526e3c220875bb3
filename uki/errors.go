package uki

import (
	"errors"
	"fmt"
)

// FormatError reports malformed PE input. It names the input, the byte
// offset, the PE/COFF field and what is wrong.
type FormatError struct {
	Input  string // input name, e.g. "linuxx64.efi.stub"
	Offset int64  // byte offset in the input
	Field  string // PE/COFF field, e.g. "COFF header.Machine"
	Reason string
	Err    error // optional sentinel
}

var _ error = (*FormatError)(nil)

// Error formats "<input>: offset 0x<hex>: <field>: <reason>".
func (e *FormatError) Error() string {
	return fmt.Sprintf("%s: offset 0x%x: %s: %s", e.Input, e.Offset, e.Field, e.Reason)
}

// Unwrap returns the sentinel, if any.
func (e *FormatError) Unwrap() error { return e.Err }

// Sentinels callers branch on; wrapped in a *FormatError or returned with
// context by Assemble.
var (
	// ErrNotPE means the input has no PE/COFF signature.
	ErrNotPE = errors.New("not a PE/COFF image")
	// ErrWrongMachine means the image is not for x86-64.
	ErrWrongMachine = errors.New("wrong machine type")
	// ErrOverlap means two sections would share file or memory space, or a
	// section name is used twice.
	ErrOverlap = errors.New("overlapping sections")
	// ErrSigned means the stub already carries a certificate table.
	ErrSigned = errors.New("image already signed")
)

func formatErr(input string, off int64, field string, sentinel error, reason string, args ...any) *FormatError {
	return &FormatError{Input: input, Offset: off, Field: field, Reason: fmt.Sprintf(reason, args...), Err: sentinel}
}
