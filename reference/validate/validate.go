// Package validate checks client-supplied fields and explains what is wrong
// in an error that names the field, so that services can answer with
// INVALID_ARGUMENT and a message a person can act on.
package validate

import (
	"fmt"
	"unicode/utf8"
)

// FieldError says which field is wrong and why.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Errorf returns a *FieldError for field.
func Errorf(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// MaxNameLen bounds room, document and match names.
const MaxNameLen = 64

// Name checks a room, document or match name: 1-64 characters of
// [A-Za-z0-9._-].
func Name(field, v string) error {
	if v == "" {
		return Errorf(field, "must not be empty")
	}
	if len(v) > MaxNameLen {
		return Errorf(field, "is %d bytes, longer than %d", len(v), MaxNameLen)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return Errorf(field, "has %q at byte %d; allowed are letters, digits, '.', '_' and '-'", c, i)
		}
	}
	return nil
}

// ID checks an opaque client identifier (client message id, client id):
// 1..max bytes of valid UTF-8.
func ID(field, v string, max int) error {
	if v == "" {
		return Errorf(field, "must not be empty")
	}
	if len(v) > max {
		return Errorf(field, "is %d bytes, longer than %d", len(v), max)
	}
	if !utf8.ValidString(v) {
		return Errorf(field, "is not valid UTF-8")
	}
	return nil
}

// Text checks a UTF-8 text field with a byte bound; empty is an error when
// required.
func Text(field, v string, maxBytes int, required bool) error {
	if v == "" && required {
		return Errorf(field, "must not be empty")
	}
	if len(v) > maxBytes {
		return Errorf(field, "is %d bytes, longer than the limit of %d", len(v), maxBytes)
	}
	if !utf8.ValidString(v) {
		return Errorf(field, "is not valid UTF-8")
	}
	return nil
}
