package strictyaml

import (
	"fmt"
	"reflect"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// Decoder returns a strict decode function for node, the kind a check or
// fault factory receives: nil or null node leaves defaults; otherwise the
// node is shape-checked against the target type and decoded, and the first
// problem is returned as an *Error under path. Each call decodes afresh.
// When keys is non-nil the visited key nodes are added to it (for later
// messages about the same params).
func Decoder(file string, node ast.Node, path string, keys map[string]ast.Node) func(into any) error {
	return func(into any) error {
		if !HasValue(node) {
			return nil
		}
		rv := reflect.ValueOf(into)
		if rv.Kind() != reflect.Ptr || rv.IsNil() {
			return fmt.Errorf("decode: need a non-nil pointer, got %T", into)
		}
		d := NewDoc(file)
		d.Shape(node, rv.Type().Elem(), path)
		if keys != nil {
			for k, v := range d.Keys {
				keys[k] = v
			}
		}
		if len(d.Errs) > 0 {
			return d.Errs[0]
		}
		if err := yaml.NodeToValue(Unwrap(node), into, yaml.Strict()); err != nil {
			return d.Convert(err, path)
		}
		return nil
	}
}

// Decode strictly decodes one YAML document in data into the struct that
// into points to; file names the source in errors. Problems are *Errors
// (joined when there are several). An empty file leaves into unchanged.
func Decode(file string, data []byte, into any) error {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return SyntaxError(file, err)
	}
	var body ast.Node
	for _, doc := range f.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		if body != nil {
			line, col := NodePos(doc.Body)
			return &Error{File: file, Line: line, Col: col, Msg: "one document per file: found a second YAML document"}
		}
		body = doc.Body
	}
	if body == nil {
		return nil
	}
	rv := reflect.ValueOf(into)
	if rv.Kind() != reflect.Ptr || rv.IsNil() {
		return fmt.Errorf("decode: need a non-nil pointer, got %T", into)
	}
	d := NewDoc(file)
	d.Shape(body, rv.Type().Elem(), "")
	if err := d.Err(); err != nil {
		return err
	}
	if err := yaml.NodeToValue(Unwrap(body), into, yaml.Strict()); err != nil {
		return d.Convert(err, "")
	}
	return nil
}
