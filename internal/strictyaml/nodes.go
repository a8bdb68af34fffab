package strictyaml

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// Unwrap strips tags, anchors and documents off n.
func Unwrap(n ast.Node) ast.Node {
	for {
		switch x := n.(type) {
		case *ast.TagNode:
			n = x.Value
		case *ast.AnchorNode:
			n = x.Value
		case *ast.DocumentNode:
			n = x.Body
		default:
			return n
		}
	}
}

// HasValue reports whether n is present and not null.
func HasValue(n ast.Node) bool {
	n = Unwrap(n)
	if n == nil {
		return false
	}
	_, null := n.(*ast.NullNode)
	return !null
}

// MapPairs returns a mapping's key-value pairs; false when n is no mapping.
func MapPairs(n ast.Node) ([]*ast.MappingValueNode, bool) {
	switch m := n.(type) {
	case *ast.MappingNode:
		return m.Values, true
	case *ast.MappingValueNode:
		return []*ast.MappingValueNode{m}, true
	}
	return nil, false
}

// KeyText is a mapping key's text.
func KeyText(k ast.MapKeyNode) string {
	if s, ok := Unwrap(k).(*ast.StringNode); ok {
		return s.Value
	}
	return k.String()
}

// NodePos is n's 1-based line and column.
func NodePos(n ast.Node) (int, int) {
	n = Unwrap(n)
	if pairs, ok := MapPairs(n); ok && len(pairs) > 0 {
		if m, flow := n.(*ast.MappingNode); !flow || !m.IsFlowStyle {
			return NodePos(pairs[0].Key)
		}
	}
	if n == nil || n.GetToken() == nil {
		return 1, 1
	}
	p := n.GetToken().Position
	return p.Line, p.Column
}

// JoinPath appends key to a field path.
func JoinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// ParentPath is the path one step up ("" at the top).
func ParentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

// FieldName is a struct field's YAML key.
func FieldName(f reflect.StructField) string {
	tag := f.Tag.Get("yaml")
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func fieldMap(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" {
			continue
		}
		m[FieldName(f)] = f.Type
	}
	return m
}

// FieldNames lists a struct type's YAML keys, sorted.
func FieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() || f.Tag.Get("yaml") == "-" {
			continue
		}
		out = append(out, FieldName(f))
	}
	if len(out) == 0 {
		out = []string{"(no fields)"}
	}
	return out
}

// DescribeType names what a value of t looks like in YAML, for messages.
func DescribeType(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration like \"30s\""
	case t.Kind() == reflect.Struct || t.Kind() == reflect.Map:
		return "a mapping"
	case t.Kind() == reflect.Slice:
		return "a list"
	case t.Kind() == reflect.String:
		return "text"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	default:
		return "a whole number"
	}
}

// DescribeNode names what n is, for messages ("a list", "the number 3").
func DescribeNode(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case *ast.NullNode:
		return "nothing"
	case *ast.StringNode:
		return strconv.Quote(n.(*ast.StringNode).Value)
	case *ast.NanNode, *ast.InfinityNode:
		return n.String() + " (not finite)"
	}
	return n.String()
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Suggest returns `; did you mean "x"?` for the closest known name within a
// small edit distance, or "".
func Suggest(got string, known []string) string {
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
