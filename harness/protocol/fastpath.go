package protocol

import (
	"time"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The fast path evaluates, without CEL, the expressions a mapping is mostly
// made of: field paths (m.a.b, it.seq), presence tests (has(m.ack)),
// constants, &&, || and ! over those, and for each: a repeated field, a
// list literal of message paths, or a ?: choosing between them. It reads
// messages through protoreflect with the field descriptors found at compile
// time, and gives up (the CEL program then runs) whenever a message does not
// carry those very descriptors (one built from another copy of the same
// .proto). Its results equal CEL's: an unset message field reads as an
// empty message, has() is protobuf presence, enums are int, a Timestamp is
// a time. The tests hold every fast result against CEL's.

// fastExpr is an expression the fast path evaluates to CEL's Value():
// bool, int64, uint64, string or time.Time. ok false: run CEL instead.
type fastExpr interface {
	eval(m, it protoreflect.Message) (v any, ok bool)
}

// fastList is an each expression the fast path evaluates to its items.
type fastList interface {
	items(m protoreflect.Message, dst []protoreflect.Message) ([]protoreflect.Message, bool)
}

// fastRoots are the message types m and it stand for (item nil when the
// rule has no each or its items are not messages).
type fastRoots struct {
	out, item protoreflect.MessageDescriptor
}

// expr recognises e; nil when the fast path cannot evaluate it.
func (r fastRoots) expr(e celast.Expr) fastExpr {
	switch e.Kind() {
	case celast.LiteralKind:
		if b, ok := e.AsLiteral().Value().(bool); ok {
			return fastConst(b)
		}
	case celast.SelectKind:
		if p := r.path(e); p != nil && p.kind != pathMessage && p.kind != pathList {
			return p
		}
	case celast.CallKind:
		call := e.AsCall()
		if call.IsMemberFunction() {
			return nil
		}
		var args []fastExpr
		for _, a := range call.Args() {
			fa := r.expr(a)
			if fa == nil {
				return nil
			}
			args = append(args, fa)
		}
		switch call.FunctionName() {
		case operators.LogicalAnd:
			return &fastLogic{and: true, args: args}
		case operators.LogicalOr:
			return &fastLogic{args: args}
		case operators.LogicalNot:
			return &fastNot{x: args[0]}
		}
	}
	return nil
}

// list recognises an each expression; nil when the fast path cannot.
func (r fastRoots) list(e celast.Expr) fastList {
	switch e.Kind() {
	case celast.SelectKind:
		if p := r.path(e); p != nil && p.kind == pathList && p.last().Message() != nil {
			return fastRepeated{p}
		}
	case celast.ListKind:
		l := e.AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil
		}
		lit := fastListLit{}
		for _, el := range l.Elements() {
			p := r.path(el)
			if p == nil || p.kind != pathMessage {
				return nil
			}
			lit = append(lit, p)
		}
		return lit
	case celast.CallKind:
		call := e.AsCall()
		if call.FunctionName() != operators.Conditional || len(call.Args()) != 3 {
			return nil
		}
		c, a, b := r.expr(call.Args()[0]), r.list(call.Args()[1]), r.list(call.Args()[2])
		if c == nil || a == nil || b == nil {
			return nil
		}
		return fastCond{cond: c, a: a, b: b}
	}
	return nil
}

type pathKind uint8

const (
	pathScalar    pathKind = iota // a scalar field's value
	pathHas                       // has(path)
	pathTimestamp                 // a google.protobuf.Timestamp, as a time
	pathMessage                   // a singular message field (list literals)
	pathList                      // a repeated field (each)
)

// fastPath is a field path from m or it.
type fastPath struct {
	kind     pathKind
	fromItem bool
	root     protoreflect.MessageDescriptor
	steps    []protoreflect.FieldDescriptor // all but the last are singular messages
}

func (p *fastPath) last() protoreflect.FieldDescriptor { return p.steps[len(p.steps)-1] }

// path recognises m.a.b / it.a / has(m.a); nil for anything else.
func (r fastRoots) path(e celast.Expr) *fastPath {
	p := &fastPath{kind: pathScalar}
	var names []string
	for e.Kind() == celast.SelectKind {
		sel := e.AsSelect()
		if sel.IsTestOnly() {
			if len(names) > 0 {
				return nil // has() inside a longer path
			}
			p.kind = pathHas
		}
		names = append(names, sel.FieldName())
		e = sel.Operand()
	}
	if e.Kind() != celast.IdentKind || len(names) == 0 {
		return nil
	}
	switch e.AsIdent() {
	case "m":
		p.root = r.out
	case "it":
		p.fromItem, p.root = true, r.item
	}
	if p.root == nil {
		return nil
	}
	md := p.root
	for i := len(names) - 1; i >= 0; i-- {
		fd := md.Fields().ByName(protoreflect.Name(names[i]))
		if fd == nil {
			return nil
		}
		p.steps = append(p.steps, fd)
		if i == 0 {
			break
		}
		if fd.IsList() || fd.IsMap() || fd.Message() == nil {
			return nil
		}
		md = fd.Message()
	}
	last := p.last()
	switch {
	case p.kind == pathHas:
	case last.IsMap():
		return nil
	case last.IsList():
		p.kind = pathList
	case last.Message() != nil && last.Message().FullName() == "google.protobuf.Timestamp":
		p.kind = pathTimestamp
	case last.Message() != nil && !isWellKnown(last.Message()):
		p.kind = pathMessage
	case last.Message() != nil, last.Kind() == protoreflect.BytesKind,
		last.Kind() == protoreflect.FloatKind, last.Kind() == protoreflect.DoubleKind:
		return nil // left to CEL: wrappers and other well-known types, bytes, floating point
	}
	return p
}

func isWellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile() != nil && md.ParentFile().Package() == "google.protobuf"
}

// holder is the message the last step is read from; ok false when a
// message on the way does not carry the expected descriptors.
func (p *fastPath) holder(m, it protoreflect.Message) (protoreflect.Message, bool) {
	msg := m
	if p.fromItem {
		msg = it
	}
	if msg == nil || msg.Descriptor() != p.root {
		return nil, false
	}
	for _, fd := range p.steps[:len(p.steps)-1] {
		msg = msg.Get(fd).Message()
		if msg.Descriptor() != fd.Message() {
			return nil, false
		}
	}
	return msg, true
}

// value reads a pathScalar's field as protoreflect holds it.
func (p *fastPath) value(m, it protoreflect.Message) (protoreflect.Value, bool) {
	msg, ok := p.holder(m, it)
	if !ok {
		return protoreflect.Value{}, false
	}
	return msg.Get(p.last()), true
}

func (p *fastPath) eval(m, it protoreflect.Message) (any, bool) {
	msg, ok := p.holder(m, it)
	if !ok {
		return nil, false
	}
	last := p.last()
	if p.kind == pathHas {
		return msg.Has(last), true
	}
	v := msg.Get(last)
	if p.kind == pathTimestamp {
		ts := v.Message()
		if ts.Descriptor() != last.Message() {
			return nil, false
		}
		fields := ts.Descriptor().Fields()
		return time.Unix(ts.Get(fields.ByNumber(1)).Int(), ts.Get(fields.ByNumber(2)).Int()).UTC(), true
	}
	switch last.Kind() {
	case protoreflect.BoolKind:
		return v.Bool(), true
	case protoreflect.StringKind:
		return v.String(), true
	case protoreflect.EnumKind:
		return int64(v.Enum()), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return v.Int(), true
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return v.Uint(), true
	}
	return nil, false
}

// message reads a pathMessage: the field's message, empty when unset.
func (p *fastPath) message(m protoreflect.Message) (protoreflect.Message, bool) {
	msg, ok := p.holder(m, nil)
	if !ok {
		return nil, false
	}
	sub := msg.Get(p.last()).Message()
	return sub, sub.Descriptor() == p.last().Message()
}

type fastConst bool

func (c fastConst) eval(_, _ protoreflect.Message) (any, bool) { return bool(c), true }

type fastLogic struct {
	and  bool
	args []fastExpr
}

func (l *fastLogic) eval(m, it protoreflect.Message) (any, bool) {
	for _, a := range l.args {
		v, ok := a.eval(m, it)
		b, isBool := v.(bool)
		if !ok || !isBool {
			return nil, false
		}
		if b != l.and { // true in an or, false in an and: decided
			return b, true
		}
	}
	return l.and, true
}

type fastNot struct{ x fastExpr }

func (n *fastNot) eval(m, it protoreflect.Message) (any, bool) {
	v, ok := n.x.eval(m, it)
	b, isBool := v.(bool)
	if !ok || !isBool {
		return nil, false
	}
	return !b, true
}

// fastRepeated is a path to a repeated message field from m.
type fastRepeated struct{ p *fastPath }

func (r fastRepeated) items(m protoreflect.Message, dst []protoreflect.Message) ([]protoreflect.Message, bool) {
	if r.p.fromItem {
		return nil, false
	}
	msg, ok := r.p.holder(m, nil)
	if !ok {
		return nil, false
	}
	list := msg.Get(r.p.last()).List()
	want := r.p.last().Message()
	for i := 0; i < list.Len(); i++ {
		item := list.Get(i).Message()
		if item.Descriptor() != want {
			return nil, false
		}
		dst = append(dst, item)
	}
	return dst, true
}

// fastListLit is a list literal of message paths from m: [m.message].
type fastListLit []*fastPath

func (l fastListLit) items(m protoreflect.Message, dst []protoreflect.Message) ([]protoreflect.Message, bool) {
	for _, p := range l {
		if p.fromItem {
			return nil, false
		}
		item, ok := p.message(m)
		if !ok {
			return nil, false
		}
		dst = append(dst, item)
	}
	return dst, true
}

// fastCond is cond ? a : b over lists.
type fastCond struct {
	cond fastExpr
	a, b fastList
}

func (c fastCond) items(m protoreflect.Message, dst []protoreflect.Message) ([]protoreflect.Message, bool) {
	v, ok := c.cond.eval(m, nil)
	b, isBool := v.(bool)
	if !ok || !isBool {
		return nil, false
	}
	if b {
		return c.a.items(m, dst)
	}
	return c.b.items(m, dst)
}

// reflectOf is the protoreflect view of a message CEL holds (an item of an
// each list), or nil when it is not a message.
func reflectOf(v any) protoreflect.Message {
	if pm, ok := v.(proto.Message); ok {
		return pm.ProtoReflect()
	}
	return nil
}
