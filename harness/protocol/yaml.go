package protocol

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

// This file holds the small strict-YAML helpers the mapping needs. The
// scenario package has its own, unexported; issue #15 makes one decoder
// package for both.

// Text is one scalar of the mapping: its value and where each of its
// characters sits in the file, so that an error inside a CEL expression or
// a JSON template points at the offending character.
type Text struct {
	Value string
	Path  string // "protocol.incoming.delivery.seq"
	Line  int    // where the scalar starts (1-based; 0 when not from a file)
	Col   int
	segs  []segment
}

// segment is one source line's share of a scalar's value: value offsets
// [off, off+n) start at line:col.
type segment struct{ off, n, line, col int }

// At returns the file position of the value's byte offset (clamped to the
// value); a scalar not from a file returns its own Line and Col.
func (t Text) At(offset int) (line, col int) {
	if len(t.segs) == 0 {
		return t.Line, t.Col
	}
	s := t.segs[0]
	for _, c := range t.segs {
		if offset >= c.off {
			s = c
		}
	}
	d := max(0, offset-s.off)
	if s.n > 0 {
		d = min(d, s.n)
	}
	return s.line, s.col + d
}

// AtLineCol returns the file position of a 1-based line and 0-based column
// inside the value (the way CEL reports locations).
func (t Text) AtLineCol(line, col int) (int, int) { return t.At(t.offset(line, col)) }

// offset turns a 1-based line and 0-based column of the value into a byte
// offset.
func (t Text) offset(line, col int) int {
	off := 0
	for i := 1; i < line; i++ {
		j := strings.IndexByte(t.Value[off:], '\n')
		if j < 0 {
			break
		}
		off += j + 1
	}
	return off + col
}

// errorf is an Error at the scalar's offset.
func (t Text) errorf(file string, offset int, format string, args ...any) *Error {
	line, col := t.At(offset)
	return &Error{File: file, Line: line, Col: col, Path: t.Path, Msg: fmt.Sprintf(format, args...)}
}

// yamlDoc decodes one mapping; it owns the file name, the source lines (for
// block scalars' positions) and the problems found.
type yamlDoc struct {
	file  string
	lines []string
	errs  *errorList
}

func (d *yamlDoc) errAt(n ast.Node, path, format string, args ...any) {
	line, col := nodePos(n)
	d.errs.add(&Error{File: d.file, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// fields walks a mapping node: each key must be in known (unknown keys are
// errors with a did-you-mean and the list); each value goes to visit in
// source order. Duplicate keys are errors. A null node is an empty mapping.
func (d *yamlDoc) fields(n ast.Node, path string, known []string, visit func(key string, keyNode, val ast.Node)) {
	n = strictyaml.Unwrap(n)
	if n == nil {
		return
	}
	if _, null := n.(*ast.NullNode); null {
		return
	}
	pairs, ok := strictyaml.MapPairs(n)
	if !ok {
		d.errAt(n, path, "want a mapping with keys %s, got %s", strings.Join(known, ", "), describeNode(n))
		return
	}
	seen := map[string]bool{}
	for _, p := range pairs {
		key := keyText(p.Key)
		kp := strictyaml.JoinPath(path, key)
		if seen[key] {
			d.errAt(p.Key, kp, "duplicate key %q", key)
			continue
		}
		seen[key] = true
		if known != nil && !contains(known, key) {
			d.errAt(p.Key, kp, "unknown field %q%s; fields: %s", key, suggest(key, known), strings.Join(known, ", "))
			continue
		}
		visit(key, p.Key, p.Value)
	}
}

// text decodes a scalar as a string with its positions. Numbers and
// booleans keep their source spelling (`when: true` is the CEL `true`).
func (d *yamlDoc) text(n ast.Node, path string) (Text, bool) {
	n = strictyaml.Unwrap(n)
	t := Text{Path: path}
	if n == nil {
		d.errs.add(&Error{File: d.file, Path: path, Msg: "missing value"})
		return t, false
	}
	t.Line, t.Col = nodePos(n)
	switch v := n.(type) {
	case *ast.StringNode:
		t.Value = v.Value
		q := 0
		if tk := v.GetToken(); tk != nil && (tk.Type == token.SingleQuoteType || tk.Type == token.DoubleQuoteType) {
			q = 1
		}
		t.segs = flowSegments(t.Value, t.Line, t.Col+q)
	case *ast.LiteralNode:
		t.Value = v.Value.Value
		t.segs = d.blockSegments(t.Value, t.Line)
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
		tk := v.GetToken()
		t.Value = tk.Value
		t.segs = flowSegments(t.Value, t.Line, t.Col)
	case *ast.NullNode:
		d.errAt(n, path, "missing value")
		return t, false
	default:
		d.errAt(n, path, "want a string, got %s", describeNode(n))
		return t, false
	}
	return t, true
}

// flowSegments maps a one-line scalar. A flow scalar folded over several
// source lines is mapped as if it were one line (positions past the first
// line are approximate).
func flowSegments(v string, line, col int) []segment {
	return []segment{{off: 0, n: len(v), line: line, col: col}}
}

// blockSegments maps a literal (|) or folded (>) block scalar whose
// indicator sits on line: its content lines follow at the block's
// indentation, each one value line (literal) or one space-joined piece
// (folded; a blank line inside a folded block makes its positions
// approximate).
func (d *yamlDoc) blockSegments(v string, line int) []segment {
	var segs []segment
	indent := -1
	off := 0
	for src := line + 1; src <= len(d.lines) && off <= len(v); src++ {
		raw := d.lines[src-1]
		if strings.TrimSpace(raw) == "" {
			segs = append(segs, segment{off: off, n: 0, line: src, col: max(indent, 0) + 1})
			off++
			continue
		}
		ind := len(raw) - len(strings.TrimLeft(raw, " "))
		if indent < 0 {
			indent = ind
		}
		if ind < indent {
			break
		}
		content := raw[indent:]
		segs = append(segs, segment{off: off, n: len(content), line: src, col: indent + 1})
		off += len(content) + 1
	}
	return segs
}

// --- small helpers ---

func keyText(k ast.MapKeyNode) string {
	if s, ok := strictyaml.Unwrap(k).(*ast.StringNode); ok {
		return s.Value
	}
	if tk := k.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

func nodePos(n ast.Node) (int, int) {
	n = strictyaml.Unwrap(n)
	if pairs, ok := strictyaml.MapPairs(n); ok && len(pairs) > 0 {
		if m, flow := n.(*ast.MappingNode); !flow || !m.IsFlowStyle {
			return nodePos(pairs[0].Key)
		}
	}
	if n == nil || n.GetToken() == nil {
		return 0, 0
	}
	p := n.GetToken().Position
	return p.Line, p.Column
}

func describeNode(n ast.Node) string {
	switch strictyaml.Unwrap(n).(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.StringNode, *ast.LiteralNode:
		return "a string"
	case *ast.IntegerNode, *ast.FloatNode:
		return "a number"
	case *ast.BoolNode:
		return "a boolean"
	case *ast.NullNode:
		return "nothing"
	}
	return "a " + fmt.Sprintf("%T", n)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
