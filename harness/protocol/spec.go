package protocol

import (
	"path/filepath"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"

	"github.com/bidikit/bidikit/internal/strictyaml"
)

// Spec is a `protocol:` block as written: every string with its position,
// nothing type-checked yet. ParseSpec (a whole file) or SpecFromNode (the
// node a scenario parser found) build it; Compile checks it against the
// descriptors and turns it into a Mapping.
type Spec struct {
	File        string // the file's name in messages
	Dir         string // relative paths (protoset, .proto files) are resolved against it
	Line, Col   int    // where the protocol block starts
	Method      Text
	Descriptors DescriptorSpec
	Metadata    []MetadataSpec
	RoomName    Text // template for room names, {{index}} the room's number; default "room-{{index}}"
	Outgoing    []TemplateSpec
	Incoming    []RuleSpec
	// Echo says the server answers each client on its own stream only
	// (`echo: true`, e.g. grpc-go's interop FullDuplexCall): every delivery
	// is one of the client's own messages, in its own room. See needs.go.
	Echo bool
}

// DescriptorSpec says where the method's descriptors come from; at most one
// of its sources is set, and none means server reflection.
type DescriptorSpec struct {
	Reflection  bool
	Protoset    Text   // a protoset file
	ProtoFiles  []Text // .proto sources, compiled at run time
	ImportPaths []Text
}

// MetadataSpec is one request metadata entry sent when a stream opens; its
// value is a template ({{token}}, {{client}}, {{session}}).
type MetadataSpec struct {
	Key             string
	KeyLine, KeyCol int
	Value           Text
}

// TemplateSpec is one outgoing message: its name ("join", "send", or an
// extra's name) and JSON template.
type TemplateSpec struct {
	Name  string
	Extra bool
	JSON  Text
}

// RuleSpec is one incoming rule: when a server message is of Kind, and the
// CEL expressions reading its fields.
type RuleSpec struct {
	Kind      Kind
	Path      string // "protocol.incoming.delivery"
	Line, Col int
	When      Text
	Each      Text // optional: a list expression; fields then read `it`, one item
	Fields    []FieldSpec
}

// FieldSpec is one field expression of a rule.
type FieldSpec struct {
	Field Field
	Expr  Text
}

var protocolKeys = []string{"method", "descriptors", "metadata", "room_name", "echo", "outgoing", "incoming"}

// ParseSpec reads the top-level `protocol:` block of a YAML file (a
// scenario file or a file of its own); other top-level keys are left to
// their owners. Unknown keys, wrong shapes and missing values are errors
// naming file:line:col and the field.
func ParseSpec(file string, data []byte) (*Spec, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, &Error{File: file, Msg: "not valid YAML: " + strings.TrimSpace(err.Error())}
	}
	for _, doc := range f.Docs {
		pairs, _ := strictyaml.MapPairs(strictyaml.Unwrap(doc))
		for _, p := range pairs {
			if keyText(p.Key) == "protocol" {
				return SpecFromNode(file, data, p.Value)
			}
		}
	}
	return nil, &Error{File: file, Path: "protocol", Msg: "no protocol block: a custom service needs `protocol:` with at least method, outgoing and incoming"}
}

// SpecFromNode decodes the value node of a `protocol:` key; data is the
// whole file (block scalars' positions are read from it).
func SpecFromNode(file string, data []byte, node ast.Node) (*Spec, error) {
	d := &yamlDoc{file: file, lines: strings.Split(string(data), "\n"), errs: &errorList{}}
	s := &Spec{File: file, Dir: filepath.Dir(file)}
	s.Line, s.Col = nodePos(node)
	if s.Line == 0 {
		s.Line, s.Col = 1, 1
	}
	hasIncoming := false
	d.fields(node, "protocol", protocolKeys, func(key string, _, val ast.Node) {
		path := "protocol." + key
		switch key {
		case "method":
			s.Method, _ = d.text(val, path)
		case "descriptors":
			d.descriptors(val, path, &s.Descriptors)
		case "metadata":
			d.fields(val, path, nil, func(k string, keyNode, v ast.Node) {
				if t, ok := d.text(v, path+"."+k); ok {
					line, col := nodePos(keyNode)
					s.Metadata = append(s.Metadata, MetadataSpec{Key: strings.ToLower(k), KeyLine: line, KeyCol: col, Value: t})
				}
			})
		case "room_name":
			s.RoomName, _ = d.text(val, path)
		case "echo":
			t, ok := d.text(val, path)
			if ok && t.Value != "true" && t.Value != "false" {
				d.errAt(val, path, "want true or false, got %q", t.Value)
			}
			s.Echo = t.Value == "true"
		case "outgoing":
			d.outgoing(val, path, s)
		case "incoming":
			hasIncoming = true
			d.incoming(val, path, s)
		}
	})
	if s.Method.Value == "" && s.Method.Line == 0 {
		d.errs.add(&Error{File: file, Line: s.Line, Col: s.Col, Path: "protocol.method", Msg: "missing: name the bidi-streaming method, e.g. method: acme.chat.v1.Chat/Stream"})
	}
	if !hasIncoming || (len(s.Incoming) == 0 && len(d.errs.errs) == 0) {
		d.errs.add(&Error{File: file, Line: s.Line, Col: s.Col, Path: "protocol.incoming", Msg: "missing: at least one rule (delivery, ack, joined, left, error, ignore) is needed to read server messages"})
	}
	if err := d.errs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (d *yamlDoc) descriptors(n ast.Node, path string, ds *DescriptorSpec) {
	sources := 0
	d.fields(n, path, []string{"reflection", "protoset", "proto"}, func(key string, keyNode, val ast.Node) {
		kp := path + "." + key
		switch key {
		case "reflection":
			t, ok := d.text(val, kp)
			if ok && t.Value != "true" && t.Value != "false" {
				d.errAt(val, kp, "want true or false, got %q", t.Value)
			}
			ds.Reflection = t.Value == "true"
			if ds.Reflection {
				sources++
			}
		case "protoset":
			ds.Protoset, _ = d.text(val, kp)
			sources++
		case "proto":
			sources++
			d.fields(val, kp, []string{"files", "import_paths"}, func(k string, _, v ast.Node) {
				list := d.list(v, kp+"."+k)
				if k == "files" {
					ds.ProtoFiles = list
				} else {
					ds.ImportPaths = list
				}
			})
			if len(ds.ProtoFiles) == 0 {
				d.errAt(keyNode, kp+".files", "missing: name the .proto files to compile")
			}
		}
	})
	if sources > 1 {
		d.errAt(n, path, "give one source: reflection, protoset or proto")
	}
}

func (d *yamlDoc) list(n ast.Node, path string) []Text {
	seq, ok := strictyaml.Unwrap(n).(*ast.SequenceNode)
	if !ok {
		if t, ok := d.text(n, path); ok {
			return []Text{t}
		}
		return nil
	}
	var out []Text
	for i, v := range seq.Values {
		if t, ok := d.text(v, path+"["+strconv.Itoa(i)+"]"); ok {
			out = append(out, t)
		}
	}
	return out
}

func (d *yamlDoc) outgoing(n ast.Node, path string, s *Spec) {
	d.fields(n, path, append(append([]string(nil), outgoingNames...), "extras"), func(key string, _, val ast.Node) {
		kp := path + "." + key
		if key != "extras" {
			if t, ok := d.text(val, kp); ok {
				s.Outgoing = append(s.Outgoing, TemplateSpec{Name: key, JSON: t})
			}
			return
		}
		d.fields(val, kp, nil, func(name string, keyNode, v ast.Node) {
			if contains(outgoingNames, name) {
				d.errAt(keyNode, kp+"."+name, "%q is a standard message: define it as outgoing.%s", name, name)
				return
			}
			if t, ok := d.text(v, kp+"."+name); ok {
				s.Outgoing = append(s.Outgoing, TemplateSpec{Name: name, Extra: true, JSON: t})
			}
		})
	})
}

func (d *yamlDoc) incoming(n ast.Node, path string, s *Spec) {
	d.fields(n, path, kindNameList(), func(key string, keyNode, val ast.Node) {
		kind, _ := kindByName(key)
		r := RuleSpec{Kind: kind, Path: path + "." + key}
		r.Line, r.Col = nodePos(keyNode)
		known := []string{"when", "each"}
		for _, f := range kindFields[kind] {
			known = append(known, f.String())
		}
		d.fields(val, r.Path, known, func(fk string, _, fv ast.Node) {
			t, ok := d.text(fv, r.Path+"."+fk)
			if !ok {
				return
			}
			switch fk {
			case "when":
				r.When = t
			case "each":
				r.Each = t
			default:
				for _, f := range kindFields[kind] {
					if f.String() == fk {
						r.Fields = append(r.Fields, FieldSpec{Field: f, Expr: t})
					}
				}
			}
		})
		if r.When.Value == "" {
			d.errAt(keyNode, r.Path+".when", "missing: a CEL condition over m that is true for %s messages, e.g. when: 'has(m.%s)'", kind, key)
		}
		s.Incoming = append(s.Incoming, r)
	})
}

// resolve joins a relative path in the spec to the spec's directory.
func (s *Spec) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(s.Dir, p)
}
