package strictyaml

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Raw is one YAML value kept as plain data until the Go type it decodes
// into is known (a check's or a fault's params, decoded by the factory its
// registry holds): the value as YAML text, where it was written, and where
// each field inside it was, so that decoding it later still names file,
// line, column and field. A Raw holds nothing of the parse it came from
// (no nodes, no closures): it can be copied, compared with
// reflect.DeepEqual and encoded. The zero Raw is "no value given".
type Raw struct {
	// File is the file the value was read from; Path its field path there
	// ("checks[2].fairness", "faults[0].params").
	File string `json:"file,omitempty"`
	Path string `json:"path,omitempty"`
	// Line and Col are where the value (or its key) was written; 0 when
	// unknown.
	Line int `json:"line,omitempty"`
	Col  int `json:"col,omitempty"`
	// YAML is the value as YAML text, anchors, aliases and merge keys
	// resolved; "" when no value was given (absent or null).
	YAML string `json:"yaml,omitempty"`
	// At is where each field inside the value was written, by field path
	// (the paths errors name: "checks[2].fairness.jain_min").
	At map[string]Pos `json:"at,omitempty"`
}

// Pos is a 1-based line and column in a file.
type Pos struct {
	Line int `json:"line"`
	Col  int `json:"col"`
}

// RawOf captures node, found at path in file, as a Raw. A nil or null node
// gives a Raw without YAML (its position still set when known). The error
// is a value that has no YAML form (it names file, line and path).
func RawOf(file string, node ast.Node, path string) (Raw, error) {
	r := Raw{File: file, Path: path}
	node = Unwrap(node)
	if node != nil {
		r.Line, r.Col = NodePos(node)
	}
	if !HasValue(node) {
		return r, nil
	}
	var v any
	if err := yaml.NodeToValue(node, &v, yaml.UseOrderedMap()); err != nil {
		return r, &Error{File: file, Line: r.Line, Col: r.Col, Path: path, Msg: "cannot be read: " + err.Error()}
	}
	text, err := yaml.Marshal(v)
	if err != nil {
		return r, &Error{File: file, Line: r.Line, Col: r.Col, Path: path, Msg: "cannot be kept: " + err.Error()}
	}
	r.YAML = string(text)
	r.At = map[string]Pos{}
	positions(node, path, r.At)
	return r, nil
}

// positions records where n and everything inside it were written: a
// mapping's fields at their keys, a list's items at their values.
func positions(n ast.Node, path string, at map[string]Pos) {
	n = Unwrap(n)
	if n == nil {
		return
	}
	if _, ok := at[path]; !ok {
		line, col := NodePos(n)
		at[path] = Pos{line, col}
	}
	if pairs, ok := MapPairs(n); ok {
		for _, kv := range pairs {
			if _, merge := kv.Key.(*ast.MergeKeyNode); merge {
				continue
			}
			kp := JoinPath(path, KeyText(kv.Key))
			line, col := NodePos(kv.Key)
			at[kp] = Pos{line, col}
			positions(kv.Value, kp, at)
		}
		return
	}
	if seq, ok := n.(*ast.SequenceNode); ok {
		for i, v := range seq.Values {
			positions(v, fmt.Sprintf("%s[%d]", path, i), at)
		}
	}
}

// Given reports whether a value was written.
func (r Raw) Given() bool { return r.YAML != "" }

// Decode strictly decodes r into the struct that into points to, the way
// Decoder does a node: no value leaves defaults; otherwise the value is
// shape-checked against the target type and decoded, and the first problem
// is returned as an *Error at the file, line and column where the field was
// written. Each call decodes afresh into into.
func (r Raw) Decode(into any) error {
	if !r.Given() {
		return nil
	}
	rv := reflect.ValueOf(into)
	if rv.Kind() != reflect.Ptr || rv.IsNil() {
		return fmt.Errorf("decode: need a non-nil pointer, got %T", into)
	}
	f, err := parser.ParseBytes([]byte(r.YAML), 0)
	if err != nil || len(f.Docs) != 1 || f.Docs[0] == nil || f.Docs[0].Body == nil {
		if err == nil {
			err = errors.New("not one YAML document")
		}
		return r.place(&Error{File: r.File, Path: r.Path, Msg: "kept params do not read back: " + err.Error()})
	}
	node := f.Docs[0].Body
	d := NewDoc(r.File)
	d.Shape(node, rv.Type().Elem(), r.Path)
	if len(d.Errs) > 0 {
		return r.place(d.Errs[0])
	}
	if err := yaml.NodeToValue(Unwrap(node), into, yaml.Strict()); err != nil {
		return r.place(d.Convert(err, r.Path))
	}
	return nil
}

// place moves err, found in r's YAML text, to where its field was written
// in r.File: the field itself, or its nearest parent that was written.
func (r Raw) place(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return err
	}
	c := *e
	c.File = r.File
	c.Line, c.Col = r.Line, r.Col
	for p := c.Path; ; p = ParentPath(p) {
		if pos, ok := r.At[p]; ok {
			c.Line, c.Col = pos.Line, pos.Col
			break
		}
		if p == "" || p == r.Path {
			break
		}
	}
	return &c
}
