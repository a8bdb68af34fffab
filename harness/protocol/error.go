package protocol

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Error is one problem in a protocol mapping: where it is (file, 1-based line
// and column; 0 when unknown) and which field (a path like
// "protocol.incoming.delivery.seq"). Compile and ParseSpec return these,
// joined with errors.Join when there are several; errors.As finds the first.
//
// It has the shape of scenario.Error on purpose: issue #15 makes one strict
// YAML decoder package for the project, and both will use its error type.
type Error struct {
	File string
	Line int
	Col  int
	Path string
	Msg  string
}

// Error renders "file:line:col: path: msg", leaving out what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

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

// suggest returns `; did you mean "x"?` for the closest known name within a
// small edit distance, or "".
func suggest(got string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(got), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
