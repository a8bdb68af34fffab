package protocol

import (
	"errors"
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// Mapping is a compiled protocol mapping: the bidi method, its outgoing
// templates and incoming rules, all type-checked against the method's
// messages. Build it with Compile; it is read-only afterwards and safe for
// concurrent use by every virtual client.
type Mapping struct {
	file     string
	method   protoreflect.MethodDescriptor
	source   string
	metadata []metaEntry
	roomName *template
	outgoing map[string]*outTemplate
	rules    []*rule
	mapped   map[Path]bool
	msgType  protoreflect.MessageType   // the client message's dynamic type
	decode   protojson.UnmarshalOptions // strict: compile time
	encode   protojson.UnmarshalOptions // run time: required fields were checked at compile time
	adapter  types.Adapter              // makes CEL values of server messages
	echo     bool                       // Spec.Echo
}

type metaEntry struct {
	key  string
	tmpl *template
}

type outTemplate struct {
	path Path
	tmpl *template
}

// DefaultRoomName names room i "room-i" when the mapping gives no room_name.
const DefaultRoomName = "room-{{index}}"

// Compile type-checks s against d before anything connects: the method must
// be bidi streaming; every outgoing template, rendered with sample values,
// must decode (protojson, unknown fields refused) into the client message;
// every CEL expression must type-check over the server message (m, and it
// for a rule with each) with the type its field needs. All problems are
// returned together, each naming file:line:col of the offending character.
func Compile(s *Spec, d *Descriptors) (*Mapping, error) {
	errs := &errorList{}
	md, err := d.Method(s.Method.Value)
	if err != nil {
		errs.add(s.Method.errorf(s.File, 0, "%v", err))
		return nil, errs.err()
	}
	m := &Mapping{
		file:     s.File,
		method:   md,
		source:   d.Source,
		echo:     s.Echo,
		outgoing: map[string]*outTemplate{},
		mapped:   map[Path]bool{},
		msgType:  dynamicpb.NewMessageType(md.Input()),
		decode:   protojson.UnmarshalOptions{Resolver: dynamicpb.NewTypes(d.Files)},
	}
	m.encode = protojson.UnmarshalOptions{Resolver: m.decode.Resolver, AllowPartial: true}
	m.compileMetadata(s, errs)
	m.compileRoomName(s, errs)
	for _, o := range s.Outgoing {
		m.compileOutgoing(o, errs)
	}
	if err := m.compileIncoming(s, d, errs); err != nil {
		return nil, err
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Mapping) compileMetadata(s *Spec, errs *errorList) {
	for _, e := range s.Metadata {
		if !validHeaderKey(e.Key) {
			errs.add(&Error{File: s.File, Line: e.KeyLine, Col: e.KeyCol, Path: e.Value.Path,
				Msg: fmt.Sprintf("metadata key %q: want lowercase letters, digits, '-', '_' or '.', not starting with grpc-", e.Key)})
			continue
		}
		t, perrs := parseTemplate(s.File, e.Value, setMetadata, false)
		for _, pe := range perrs {
			errs.add(pe)
		}
		m.metadata = append(m.metadata, metaEntry{key: e.Key, tmpl: t})
	}
}

func (m *Mapping) compileRoomName(s *Spec, errs *errorList) {
	src := s.RoomName
	if src.Value == "" {
		src = Text{Value: DefaultRoomName, Path: "protocol.room_name"}
	}
	t, perrs := parseTemplate(s.File, src, setRoomName, false)
	for _, pe := range perrs {
		errs.add(pe)
	}
	if !strings.Contains(src.Value, "{{index}}") && len(perrs) == 0 {
		errs.add(src.errorf(s.File, 0, "room_name must contain {{index}} so that each room gets its own name"))
	}
	m.roomName = t
}

// compileOutgoing parses one template, renders it with sample values and
// decodes the result into the client message: unknown fields name the
// message and its fields, type errors point into the template.
func (m *Mapping) compileOutgoing(o TemplateSpec, errs *errorList) {
	allowed := setOutgoing
	if o.Name == OutResume {
		allowed = setResume
	}
	t, perrs := parseTemplate(m.file, o.JSON, allowed, true)
	for _, pe := range perrs {
		errs.add(pe)
	}
	if len(perrs) > 0 {
		return
	}
	sample := sampleValues
	sample.Room = m.RoomName(1)
	var spans []int
	rendered := t.render(nil, &sample, &spans)
	at := func(p *jsonProblem) {
		errs.add(o.JSON.errorf(m.file, t.sourceOffset(spans, p.off), "%s (rendered with sample values: %s)", p.msg, rendered))
	}
	in := m.method.Input()
	if p := checkFields(rendered, in); p != nil {
		at(p)
		return
	}
	msg := dynamicpb.NewMessage(in)
	if err := m.decode.Unmarshal(rendered, msg); err != nil {
		at(protojsonProblem(rendered, err))
		return
	}
	path := Out(o.Name)
	m.outgoing[o.Name] = &outTemplate{path: path, tmpl: t}
	m.mapped[path] = true
}

func (m *Mapping) compileIncoming(s *Spec, d *Descriptors, errs *errorList) error {
	out := m.method.Output()
	c, err := newExprCompiler(s.File, d, out, errs)
	if err != nil {
		return &Error{File: s.File, Line: s.Line, Col: s.Col, Path: "protocol.incoming", Msg: err.Error()}
	}
	m.adapter = c.base.CELTypeAdapter()
	for _, rs := range s.Incoming {
		r := &rule{kind: rs.Kind, path: rs.Path}
		when, ok := c.compile(c.base, rs.When, acceptBool, "bool")
		if ok {
			r.when, r.whenFast = when.prg, fastRoots{out: out}.expr(when.ast.NativeRep().Expr())
		}
		env := c.base
		var itemMD protoreflect.MessageDescriptor
		if rs.Each.Value != "" {
			each, eachOK := c.compile(c.base, rs.Each, acceptList, "a list, e.g. m.batch.messages or [m.message]")
			if eachOK {
				item := cel.DynType
				if params := each.out.Parameters(); len(params) == 1 {
					item = params[0]
				}
				itemMD = c.messageOf(item)
				if env, err = c.withItem(item); err != nil {
					errs.add(rs.Each.errorf(s.File, 0, "%v", err))
					eachOK = false
				} else {
					r.each, r.eachFast = each.prg, fastRoots{out: out}.list(each.ast.NativeRep().Expr())
				}
			}
			ok = ok && eachOK
		}
		for _, fs := range rs.Fields {
			fc, fok := c.compile(env, fs.Expr, accepts(fieldTypes[fs.Field]), fieldTypes[fs.Field].wants())
			if !fok {
				ok = false
				continue
			}
			if identifying[fs.Field] && !readsMessage(fc.ast) {
				// A constant seq or message id makes every message look
				// like every other: ordered, gap-free, never duplicated.
				errs.add(fs.Expr.errorf(s.File, 0, "%s reads nothing of the server message (a constant): a %s must come from m (or it, with each)",
					strings.TrimSpace(fs.Expr.Value), fs.Field))
				ok = false
				continue
			}
			r.fields = append(r.fields, fieldProgram{field: fs.Field, prg: fc.prg, fast: fastRoots{out: out, item: itemMD}.expr(fc.ast.NativeRep().Expr()), path: fs.Expr.Path})
		}
		if !ok {
			continue
		}
		m.rules = append(m.rules, r)
		m.mapped[Rule(rs.Kind)] = true
		for _, f := range r.fields {
			m.mapped[In(rs.Kind, f.field)] = true
		}
	}
	return nil
}

// Echo says the server answers each client on its own stream only: every
// delivery is one of the client's own messages (Spec.Echo).
func (m *Mapping) Echo() bool { return m.echo }

// Method is the bidi-streaming method the mapping drives.
func (m *Mapping) Method() protoreflect.MethodDescriptor { return m.method }

// FullMethod is the method's gRPC path, "/package.Service/Method".
func (m *Mapping) FullMethod() string { return FullMethod(m.method) }

// Source says where the descriptors came from.
func (m *Mapping) Source() string { return m.source }

// RoomName is room i's name: what {{room}} renders to and what the room
// expressions of incoming rules must yield for that room.
func (m *Mapping) RoomName(i int) string { return m.roomName.String(Values{Index: i}) }

// errNotMapped is returned (wrapped) by Encode for a message the mapping
// does not define.
var errNotMapped = errors.New("not mapped")

// IsNotMapped reports whether err says an outgoing message is not mapped.
func IsNotMapped(err error) bool { return errors.Is(err, errNotMapped) }

func validHeaderKey(k string) bool {
	if k == "" || strings.HasPrefix(k, "grpc-") {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// identifying are the fields that tell messages apart: mapped to a
// constant, a check would judge one message many times over and pass.
var identifying = map[Field]bool{FieldSeq: true, FieldSenderSeq: true, FieldHeadSeq: true, FieldReplayFrom: true, FieldClientMsgID: true}

// readsMessage says whether a checked expression reads the message (m) or
// the item (it).
func readsMessage(a *cel.Ast) bool {
	found := celast.MatchDescendants(celast.NavigateAST(a.NativeRep()), func(n celast.NavigableExpr) bool {
		return n.Kind() == celast.IdentKind && (n.AsIdent() == "m" || n.AsIdent() == "it")
	})
	return len(found) > 0
}
