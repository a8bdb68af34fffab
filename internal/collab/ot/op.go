// Package ot is the pure operational-transformation engine of the collab
// service: plain-text operations over Unicode code points, Apply, Transform
// (TP1), Compose, cursor transformation, and Rope, a text structure on which a
// small edit costs O(log n) instead of a copy of the whole document.
//
// An Op walks the whole base text from its start: its retained plus deleted
// code points equal the base text's length (the wire contract of
// bidikit.collab.v1.Operation). Normalised form: no zero-length components,
// adjacent components of the same kind merged, and the trailing Retain kept
// (an op states the length it applies to, so a length mismatch is always
// detected). Nothing in this package blocks or keeps global state.
package ot

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind is the kind of a Component.
type Kind uint8

// The component kinds.
const (
	Retain Kind = iota + 1 // keep N code points
	Insert                 // insert Text (N is its code-point count)
	Delete                 // remove N code points
)

func (k Kind) String() string {
	switch k {
	case Retain:
		return "retain"
	case Insert:
		return "insert"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Component is one step of an Op. For Insert, N is the number of code points
// of Text; for Retain and Delete, Text is empty.
type Component struct {
	Kind Kind
	N    int
	Text string
}

func (c Component) String() string {
	if c.Kind == Insert {
		return fmt.Sprintf("insert %q", c.Text)
	}
	return fmt.Sprintf("%s %d", c.Kind, c.N)
}

// Op is a sequence of components over a base text. Build one with the
// Retain/Insert/Delete methods, which keep it normalised.
type Op []Component

// Retain returns o followed by a retain of n code points (n <= 0 is a no-op).
func (o Op) Retain(n int) Op {
	if n <= 0 {
		return o
	}
	if l := len(o); l > 0 && o[l-1].Kind == Retain {
		o[l-1].N += n
		return o
	}
	return append(o, Component{Kind: Retain, N: n})
}

// Insert returns o followed by an insert of s ("" is a no-op).
func (o Op) Insert(s string) Op {
	if s == "" {
		return o
	}
	n := utf8.RuneCountInString(s)
	if l := len(o); l > 0 && o[l-1].Kind == Insert {
		o[l-1].Text += s
		o[l-1].N += n
		return o
	}
	return append(o, Component{Kind: Insert, N: n, Text: s})
}

// Delete returns o followed by a delete of n code points (n <= 0 is a no-op).
func (o Op) Delete(n int) Op {
	if n <= 0 {
		return o
	}
	if l := len(o); l > 0 && o[l-1].Kind == Delete {
		o[l-1].N += n
		return o
	}
	return append(o, Component{Kind: Delete, N: n})
}

// Add appends c through the normalising builders.
func (o Op) Add(c Component) Op {
	switch c.Kind {
	case Retain:
		return o.Retain(c.N)
	case Insert:
		return o.Insert(c.Text)
	case Delete:
		return o.Delete(c.N)
	}
	return o
}

// Normalize returns o in normalised form (a new slice; o is not changed).
func Normalize(o Op) Op {
	out := make(Op, 0, len(o))
	for _, c := range o {
		out = out.Add(c)
	}
	return out
}

// BaseLen is the length, in code points, of the text o applies to.
func (o Op) BaseLen() int {
	n := 0
	for _, c := range o {
		if c.Kind != Insert {
			n += c.N
		}
	}
	return n
}

// TargetLen is the length of the text o produces.
func (o Op) TargetLen() int {
	n := 0
	for _, c := range o {
		if c.Kind != Delete {
			n += c.N
		}
	}
	return n
}

// InsertLen is the number of code points o inserts.
func (o Op) InsertLen() int {
	n := 0
	for _, c := range o {
		if c.Kind == Insert {
			n += c.N
		}
	}
	return n
}

// IsNoop reports whether o changes nothing (only retains).
func (o Op) IsNoop() bool {
	for _, c := range o {
		if c.Kind != Retain {
			return false
		}
	}
	return true
}

func (o Op) String() string {
	parts := make([]string, len(o))
	for i, c := range o {
		parts[i] = c.String()
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Splice returns the op that, on a text of docLen code points, deletes del
// code points at pos and inserts ins there (the editing-trace patch form).
func Splice(docLen, pos, del int, ins string) (Op, error) {
	if pos < 0 || del < 0 || pos+del > docLen {
		return nil, fmt.Errorf("splice at %d deleting %d does not fit a text of %d code points", pos, del, docLen)
	}
	return Op{}.Retain(pos).Delete(del).Insert(ins).Retain(docLen - pos - del), nil
}

// Check validates the shape of o: known kinds, positive lengths, insert text
// that is valid UTF-8 with N matching its code points. It does not check
// normalisation (merged neighbours are allowed on input).
func (o Op) Check() error {
	for i, c := range o {
		switch c.Kind {
		case Retain, Delete:
			if c.N <= 0 {
				return fmt.Errorf("component %d: %s of %d code points; must be positive", i, c.Kind, c.N)
			}
		case Insert:
			if c.Text == "" {
				return fmt.Errorf("component %d: empty insert", i)
			}
			if !utf8.ValidString(c.Text) {
				return fmt.Errorf("component %d: insert is not valid UTF-8", i)
			}
			if n := utf8.RuneCountInString(c.Text); n != c.N {
				return fmt.Errorf("component %d: insert of %d code points says %d", i, n, c.N)
			}
		default:
			return fmt.Errorf("component %d: unknown kind %d", i, c.Kind)
		}
	}
	return nil
}

// LengthError says that an op does not span the text it was applied to.
type LengthError struct {
	OpLen, TextLen int
}

func (e *LengthError) Error() string {
	return fmt.Sprintf("op spans %d code points but the text has %d", e.OpLen, e.TextLen)
}

// Apply returns text with o applied. The error (a *LengthError) says when o
// does not span the whole text.
func Apply(text string, o Op) (string, error) {
	rs := []rune(text)
	if bl := o.BaseLen(); bl != len(rs) {
		return "", &LengthError{OpLen: bl, TextLen: len(rs)}
	}
	var b strings.Builder
	b.Grow(len(text))
	pos := 0
	for _, c := range o {
		switch c.Kind {
		case Retain:
			b.WriteString(string(rs[pos : pos+c.N]))
			pos += c.N
		case Insert:
			b.WriteString(c.Text)
		case Delete:
			pos += c.N
		}
	}
	return b.String(), nil
}

// TransformCursor maps a code-point position in o's base text to the
// position of the same place in o's result. An insert exactly at pos pushes
// the cursor right (it ends up after the inserted text); a deleted range
// containing pos collapses it to the start of the range.
func TransformCursor(pos int, o Op) int {
	if pos < 0 {
		pos = 0
	}
	base, out := 0, pos
	for _, c := range o {
		if base > pos {
			break
		}
		switch c.Kind {
		case Retain:
			base += c.N
		case Insert:
			out += c.N
		case Delete:
			out -= min(c.N, pos-base)
			base += c.N
		}
	}
	return out
}
