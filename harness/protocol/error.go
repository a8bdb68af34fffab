package protocol

import (
	"errors"
	"fmt"
	"sort"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

// Error is one problem in a protocol mapping: where it is (file, 1-based line
// and column; 0 when unknown) and which field (a path like
// "protocol.incoming.delivery.seq"). Compile and ParseSpec return these,
// joined with errors.Join when there are several; errors.As finds the first.
// It is the project's one strict-YAML error (internal/strictyaml).
type Error = strictyaml.Error

// maxErrors bounds the problems reported for one mapping.
const maxErrors = 20

// errorList collects a mapping's problems in source order.
type errorList struct {
	errs []*Error
}

func (l *errorList) add(e *Error) { l.errs = append(l.errs, e) }

// err joins the problems in line order (at most maxErrors), or nil.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i], l.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	out := make([]error, 0, maxErrors+1)
	for i, e := range l.errs {
		if i == maxErrors {
			out = append(out, fmt.Errorf("... and %d more problems", len(l.errs)-maxErrors))
			break
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// suggest returns `; did you mean "x"?` for the closest known name, or "".
func suggest(got string, known []string) string { return strictyaml.Suggest(got, known) }
