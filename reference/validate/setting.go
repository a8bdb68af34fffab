package validate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// SettingError says which configuration field is unusable and why. Field is
// a Go field path as a program sets it ("Chat.QueueBytes", "TokensFile",
// "Options.Addr"); Also names further fields the reason involves. A CLI
// that binds fields to flags (BindFlag) renders the same error in flag terms
// with FlagError; libraries never name flags themselves.
type SettingError struct {
	Field string
	Also  []string
	// Reason says what is wrong, after the field name: "is 0, want >= 1".
	// Each "{}" in it stands for the next name of Also; names of Also
	// without a "{}" are listed after Field ("A, B and C exclude each other").
	Reason string
	Err    error // the cause, when there is one (a file that does not open)
}

// Error names the fields, then the reason and the cause:
// "Chat.QueueBytes is 10, want >= 1024", "DevAuth and TokensFile exclude
// each other: pick one", "TokensFile: open t.txt: no such file".
func (e *SettingError) Error() string {
	var b strings.Builder
	b.WriteString(e.Field)
	reason := e.Reason
	also := e.Also
	for len(also) > 0 && strings.Contains(reason, "{}") {
		reason = strings.Replace(reason, "{}", also[0], 1)
		also = also[1:]
	}
	for i, a := range also {
		if i == len(also)-1 {
			b.WriteString(" and ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(a)
	}
	if reason != "" {
		b.WriteString(" ")
		b.WriteString(reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *SettingError) Unwrap() error { return e.Err }

// Settingf returns a *SettingError for field with a formatted reason.
func Settingf(field, format string, args ...any) *SettingError {
	return &SettingError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// SettingErr returns a *SettingError for field caused by err (a file the
// field names that does not load, a server it names that does not answer).
func SettingErr(field string, err error) *SettingError {
	return &SettingError{Field: field, Err: err}
}

// RenameFields returns err with the field names of its *SettingError
// replaced through names (unlisted names are kept): an assembly that embeds
// a library's configuration under other field names reports its own. Other
// errors are returned as they are.
func RenameFields(err error, names map[string]string) error {
	var se *SettingError
	if !errors.As(err, &se) {
		return err
	}
	rename := func(f string) string {
		if n, ok := names[f]; ok {
			return n
		}
		return f
	}
	out := *se
	out.Field = rename(se.Field)
	out.Also = make([]string, len(se.Also))
	for i, a := range se.Also {
		out.Also[i] = rename(a)
	}
	return &out
}

// fieldAnnotation is the pflag annotation key BindFlag records a flag's
// field under.
const fieldAnnotation = "bidikit/field"

// BindFlag records on fs that flag sets the configuration field field, for
// FlagError. The flag must already be defined on fs.
func BindFlag(fs *pflag.FlagSet, flag, field string) {
	_ = fs.SetAnnotation(flag, fieldAnnotation, []string{field}) // flag defined by the caller
}

// FlagError returns err in the terms of fs's flags: when err holds a
// *SettingError whose fields are bound to flags (BindFlag), the result is
// that error with "--flag" in place of each bound field name (the cause is
// kept, so errors.Is and errors.As still see it). Any other err, or a nil
// fs, is returned as it is.
func FlagError(fs *pflag.FlagSet, err error) error {
	if fs == nil || err == nil {
		return err
	}
	names := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) {
		for _, field := range f.Annotations[fieldAnnotation] {
			names[field] = "--" + f.Name
		}
	})
	return RenameFields(err, names)
}
