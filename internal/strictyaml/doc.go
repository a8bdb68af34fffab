package strictyaml

import (
	"errors"
	"fmt"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// Doc checks one YAML document (or one decode's node tree) against Go
// types, strictly, recording every key and value node by field path
// ("roles[1].rate") so that later messages can point at them, and collects
// the problems found, each an *Error with file, line, column and path. One
// Doc belongs to one parse; it is not shared between goroutines.
type Doc struct {
	File string
	// Errs are the problems found so far (at most MaxErrors).
	Errs []error
	// Keys and Vals are the key and value nodes visited, by field path.
	Keys map[string]ast.Node
	Vals map[string]ast.Node
}

// MaxErrors bounds the problems reported for one document.
const MaxErrors = 20

// NewDoc returns an empty Doc for file (the name errors give).
func NewDoc(file string) *Doc {
	return &Doc{File: file, Keys: map[string]ast.Node{}, Vals: map[string]ast.Node{}}
}

// Add records err (up to MaxErrors).
func (d *Doc) Add(err error) {
	if len(d.Errs) < MaxErrors {
		d.Errs = append(d.Errs, err)
	}
}

// Err is nil, the one problem found, or all of them joined.
func (d *Doc) Err() error {
	if len(d.Errs) == 1 {
		return d.Errs[0]
	}
	return errors.Join(d.Errs...)
}

// Has reports whether the document has a key at path.
func (d *Doc) Has(path string) bool { _, ok := d.Keys[path]; return ok }

// At returns the position for path: its key when the field is present, else
// its value, else the nearest present parent.
func (d *Doc) At(path string) (int, int) {
	for {
		if n, ok := d.Keys[path]; ok {
			return NodePos(n)
		}
		if n, ok := d.Vals[path]; ok {
			return NodePos(n)
		}
		if path == "" {
			return 1, 1
		}
		path = ParentPath(path)
	}
}

// Errorf records a problem at path.
func (d *Doc) Errorf(path, format string, args ...any) {
	if len(d.Errs) >= MaxErrors {
		return
	}
	line, col := d.At(path)
	d.Errs = append(d.Errs, &Error{File: d.File, Line: line, Col: col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Convert turns a go-yaml error into an *Error at its token's field path.
func (d *Doc) Convert(err error, fallback string) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		tk := ye.GetToken()
		path := fallback
		for p, n := range d.Vals {
			if n.GetToken() == tk {
				path = p
				break
			}
		}
		for p, n := range d.Keys {
			if n.GetToken() == tk {
				path = p
				break
			}
		}
		return &Error{File: d.File, Line: tk.Position.Line, Col: tk.Position.Column, Path: path, Msg: ye.GetMessage()}
	}
	line, col := d.At(fallback)
	return &Error{File: d.File, Line: line, Col: col, Path: fallback, Msg: err.Error()}
}

// SyntaxError turns a go-yaml parse error into an *Error at its token.
func SyntaxError(file string, err error) error {
	var ye yaml.Error
	if errors.As(err, &ye) && ye.GetToken() != nil {
		tk := ye.GetToken()
		return &Error{File: file, Line: tk.Position.Line, Col: tk.Position.Column, Msg: "YAML syntax: " + ye.GetMessage()}
	}
	return &Error{File: file, Msg: "YAML syntax: " + err.Error()}
}
