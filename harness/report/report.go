// Package report renders a run's results (result.Run) for people and
// machines: a text verdict table, a stable JSON document, JUnit XML for CI
// and one self-contained HTML page with inline SVG charts. Each renderer is a
// func(io.Writer, *result.Run) error in its own file; renderers only read the
// run and write to w, and hold no state between calls.
package report

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/bidikit/bidikit/harness/result"
)

// Renderer writes one report format of run to w.
type Renderer func(w io.Writer, run *result.Run) error

// renderers is the format registry; read-only after init.
var renderers = map[string]Renderer{
	"text":  Text,
	"json":  JSON,
	"junit": JUnit,
	"html":  HTML,
	// markdown: CI job summaries and PR comments (markdown.go).
	"markdown": Markdown,
}

// Formats lists the report formats Write accepts, sorted.
func Formats() []string {
	out := make([]string, 0, len(renderers))
	for f := range renderers {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Write renders run to w in format (text, json, junit, html or markdown). The text
// format uses colour only when w is a terminal (see Text).
func Write(w io.Writer, format string, run *result.Run) error {
	r, ok := renderers[format]
	if !ok {
		return fmt.Errorf("unknown report format %q (known: %v)", format, Formats())
	}
	if run == nil {
		return errors.New("report: no run to render")
	}
	return r(w, run)
}
