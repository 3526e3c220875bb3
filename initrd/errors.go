package initrd

import "fmt"

// FormatError is a malformed archive: Input names the file, Offset is the
// byte offset of the offending field, Field the newc header field.
type FormatError struct {
	Input  string
	Offset int64
	Field  string
	Reason string
	Err    error
}

var _ error = (*FormatError)(nil)

func (e *FormatError) Error() string {
	s := fmt.Sprintf("%s: offset 0x%x: %s: %s", e.Input, e.Offset, e.Field, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }
