package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonProblem is a problem in a rendered template, at an offset of the
// rendered bytes.
type jsonProblem struct {
	off int
	msg string
}

// checkFields walks rendered JSON along md and reports the first key that
// names no field, with the message's fields listed. Values it does not
// descend into (scalars, well-known types with a JSON form of their own)
// are left to protojson, which reports their type errors.
func checkFields(rendered []byte, md protoreflect.MessageDescriptor) *jsonProblem {
	w := &jsonWalker{src: rendered, dec: json.NewDecoder(bytes.NewReader(rendered))}
	w.dec.UseNumber()
	tok, err := w.dec.Token()
	if err != nil {
		return nil // syntax: protojson says where
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return &jsonProblem{off: 0, msg: fmt.Sprintf("want a JSON object for %s, got %s", md.FullName(), describeJSON(tok))}
	}
	return w.object(md)
}

type jsonWalker struct {
	src   []byte
	dec   *json.Decoder
	depth int
}

const maxJSONDepth = 64

// object reads an object's members after its '{' up to and including '}'.
func (w *jsonWalker) object(md protoreflect.MessageDescriptor) *jsonProblem {
	w.depth++
	defer func() { w.depth-- }()
	if w.depth > maxJSONDepth {
		return nil
	}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		end := int(w.dec.InputOffset())
		start := bytes.LastIndexByte(w.src[:max(0, end-1)], '"') + 1
		fd := fieldByJSONKey(md, key)
		if fd == nil && !strings.HasPrefix(key, "[") {
			return &jsonProblem{off: start, msg: fmt.Sprintf("unknown field %q in %s%s; fields: %s",
				key, md.FullName(), suggest(key, fieldNameList(md)), strings.Join(fieldNameList(md), ", "))}
		}
		if p := w.value(fd); p != nil {
			return p
		}
	}
	_, _ = w.dec.Token() // '}'
	return nil
}

// value reads one member value of fd (nil: an extension, skipped).
func (w *jsonWalker) value(fd protoreflect.FieldDescriptor) *jsonProblem {
	tok, err := w.dec.Token()
	if err != nil {
		return nil
	}
	d, isDelim := tok.(json.Delim)
	switch {
	case fd == nil || !isDelim:
		return w.skip(tok)
	case fd.IsMap() && d == '{' && walkable(fd.MapValue()):
		for w.dec.More() {
			if _, err := w.dec.Token(); err != nil { // the map key
				return nil
			}
			if p := w.value(fd.MapValue()); p != nil {
				return p
			}
		}
		_, _ = w.dec.Token()
		return nil
	case fd.IsList() && d == '[' && walkable(fd):
		for w.dec.More() {
			t, err := w.dec.Token()
			if err != nil {
				return nil
			}
			if od, ok := t.(json.Delim); ok && od == '{' {
				if p := w.object(fd.Message()); p != nil {
					return p
				}
				continue
			}
			if p := w.skip(t); p != nil {
				return p
			}
		}
		_, _ = w.dec.Token()
		return nil
	case !fd.IsList() && !fd.IsMap() && d == '{' && walkable(fd):
		return w.object(fd.Message())
	}
	return w.skip(tok)
}

// skip consumes the rest of a value whose first token is tok.
func (w *jsonWalker) skip(tok json.Token) *jsonProblem {
	d, ok := tok.(json.Delim)
	if !ok || d == '}' || d == ']' {
		return nil
	}
	for depth := 1; depth > 0; {
		t, err := w.dec.Token()
		if err != nil {
			return nil
		}
		if d, ok := t.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
	}
	return nil
}

// walkable: a message field whose JSON form is an object of its fields
// (not one of the well-known types with a JSON form of their own).
func walkable(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.GroupKind {
		return false
	}
	return !strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.")
}

func fieldByJSONKey(md protoreflect.MessageDescriptor, key string) protoreflect.FieldDescriptor {
	fields := md.Fields()
	if fd := fields.ByJSONName(key); fd != nil {
		return fd
	}
	if fd := fields.ByTextName(key); fd != nil {
		return fd
	}
	return fields.ByName(protoreflect.Name(key))
}

// fieldNameList lists md's fields by their .proto names, in declaration order.
func fieldNameList(md protoreflect.MessageDescriptor) []string {
	out := make([]string, md.Fields().Len())
	for i := range out {
		out[i] = string(md.Fields().Get(i).Name())
	}
	return out
}

func describeJSON(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprint(tok)
}

// protojsonPos finds "(line L:C)" in a protojson error: the position in the
// rendered bytes, and the message without it.
var protojsonPos = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

func protojsonProblem(rendered []byte, err error) *jsonProblem {
	msg := strings.TrimSpace(strings.TrimPrefix(err.Error(), "proto:"))
	msg = strings.ReplaceAll(msg, "\u00a0", " ")
	m := protojsonPos.FindStringSubmatchIndex(msg)
	if m == nil {
		if strings.Contains(msg, "EOF") {
			return &jsonProblem{off: len(rendered), msg: msg + ": the JSON ends too early"}
		}
		return &jsonProblem{off: 0, msg: msg}
	}
	line, _ := strconv.Atoi(msg[m[2]:m[3]])
	col, _ := strconv.Atoi(msg[m[4]:m[5]])
	before := strings.TrimSpace(msg[:m[0]])
	rest := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(msg[m[1]:]), ":"))
	if before != "" {
		rest = before + ": " + rest
	}
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(rendered[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return &jsonProblem{off: off + max(col-1, 0), msg: rest}
}
