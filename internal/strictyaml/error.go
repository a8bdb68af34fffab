// Package strictyaml decodes YAML strictly, for every file the project
// reads (scenarios, ACL files, benchmark configs): unknown fields, wrong
// kinds, fractional integers and unitless durations are errors, each an
// *Error naming file, line, column and field path, with a did-you-mean for
// a misspelt key. Doc walks a node tree and keeps the positions; Decode
// does a whole file in one call; Raw keeps one value as plain data (a
// check's or fault's params) and decodes it later with the same errors at
// the same places; the scenario format builds its rules on top of Doc
// (harness/scenario).
package strictyaml

import (
	"fmt"
	"strings"
)

// Error is one problem in a YAML file: where it is (file, 1-based line
// and column) and which field (a path like "roles[1].rate"; empty for the
// file as a whole). Several are joined with errors.Join; errors.As finds
// the first.
type Error struct {
	File string
	Line int
	Col  int
	Path string
	Msg  string
}

// Error renders "FILE:LINE:COL: PATH: MSG", leaving out what is unknown.
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
