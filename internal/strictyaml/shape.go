package strictyaml

import (
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
)

var (
	durationType = reflect.TypeOf(time.Duration(0))
	astNodeType  = reflect.TypeOf((*ast.Node)(nil)).Elem()
)

// Shape checks node against t (strictly: unknown fields, wrong kinds,
// fractional numbers for integers, unitless durations are all errors) and
// records the nodes it visits under path.
func (d *Doc) Shape(node ast.Node, t reflect.Type, path string) {
	node = Unwrap(node)
	if node == nil {
		return
	}
	d.Vals[path] = node
	if t == astNodeType || t.Kind() == reflect.Interface {
		return
	}
	if _, alias := node.(*ast.AliasNode); alias {
		return // resolved and checked by the decoder
	}
	if t.Kind() == reflect.Ptr {
		d.Shape(node, t.Elem(), path)
		return
	}
	if _, null := node.(*ast.NullNode); null {
		d.Errorf(path, "has no value; give %s or remove the line", DescribeType(t))
		return
	}
	switch {
	case t == durationType:
		s, ok := node.(*ast.StringNode)
		if !ok {
			d.Errorf(path, "must be a duration with a unit, like \"30s\" or \"2m\", not %s", DescribeNode(node))
			return
		}
		if _, err := time.ParseDuration(s.Value); err != nil {
			d.Errorf(path, "%q is not a duration; write it like \"30s\", \"1m30s\" or \"500ms\"", s.Value)
		}
	case t.Kind() == reflect.Struct:
		pairs, ok := MapPairs(node)
		if !ok {
			d.Errorf(path, "must be a mapping of %s, not %s", strings.Join(FieldNames(t), ", "), DescribeNode(node))
			return
		}
		fields := fieldMap(t)
		for _, kv := range pairs {
			if _, merge := kv.Key.(*ast.MergeKeyNode); merge {
				continue
			}
			key := KeyText(kv.Key)
			kp := JoinPath(path, key)
			d.Keys[kp] = kv.Key
			ft, ok := fields[key]
			if !ok && len(fields) == 0 {
				d.Errorf(kp, "unknown field %q: this takes no parameters", key)
				continue
			}
			if !ok {
				d.Errorf(kp, "unknown field %q%s (known: %s)", key, Suggest(key, FieldNames(t)), strings.Join(FieldNames(t), ", "))
				continue
			}
			d.Shape(kv.Value, ft, kp)
		}
	case t.Kind() == reflect.Slice:
		seq, ok := node.(*ast.SequenceNode)
		if !ok {
			d.Errorf(path, "must be a list, not %s", DescribeNode(node))
			return
		}
		for i, v := range seq.Values {
			d.Shape(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case t.Kind() == reflect.Map:
		pairs, ok := MapPairs(node)
		if !ok {
			d.Errorf(path, "must be a mapping, not %s", DescribeNode(node))
			return
		}
		for _, kv := range pairs {
			kp := JoinPath(path, KeyText(kv.Key))
			d.Keys[kp] = kv.Key
			d.Shape(kv.Value, t.Elem(), kp)
		}
	case t.Kind() == reflect.String:
		switch node.(type) {
		case *ast.StringNode, *ast.LiteralNode:
		default:
			d.Errorf(path, "must be text, not %s (quote it if you meant text)", DescribeNode(node))
		}
	case t.Kind() == reflect.Bool:
		if _, ok := node.(*ast.BoolNode); !ok {
			d.Errorf(path, "must be true or false, not %s", DescribeNode(node))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		n, ok := node.(*ast.IntegerNode)
		if !ok {
			if s, str := node.(*ast.StringNode); str && len(s.Value) > 18 && allDigits(strings.TrimPrefix(s.Value, "-")) {
				d.Errorf(path, "%s is too large", s.Value)
				return
			}
			d.Errorf(path, "must be a whole number, not %s", DescribeNode(node))
			return
		}
		var v int64
		switch x := n.Value.(type) {
		case int64:
			v = x
		case uint64:
			if x > math.MaxInt64 {
				d.Errorf(path, "%d is too large", x)
				return
			}
			v = int64(x)
		}
		if reflect.New(t).Elem().OverflowInt(v) {
			d.Errorf(path, "%d is too large", v)
		}
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		n, ok := node.(*ast.IntegerNode)
		if !ok {
			d.Errorf(path, "must be a whole number, not %s", DescribeNode(node))
			return
		}
		if x, neg := n.Value.(int64); neg && x < 0 {
			d.Errorf(path, "must not be negative, got %d", x)
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		switch node.(type) {
		case *ast.IntegerNode, *ast.FloatNode:
		default:
			d.Errorf(path, "must be a finite number, not %s", DescribeNode(node))
		}
	default:
		d.Errorf(path, "cannot be decoded (unsupported Go type %s)", t)
	}
}
