package protocol

import (
	"errors"
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/traits"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// rule is one compiled incoming rule.
type rule struct {
	kind     Kind
	path     string
	when     cel.Program
	whenFast fastExpr    // nil: when always runs in CEL
	each     cel.Program // nil: the message is one item
	eachFast fastList    // nil: each always runs in CEL
	fields   []fieldProgram
}

type fieldProgram struct {
	field Field
	path  string
	prg   cel.Program
	fast  fastExpr // nil: always CEL
}

// maxItems bounds the items one message's each expression may yield.
const maxItems = 1 << 16

// Classify reads one server message: the first rule (in the mapping's
// order) whose when is true decides its kind, and its field expressions
// fill the Incoming. A rule with each yields one Incoming per item (a batch
// of deliveries); a message no rule matches is one Incoming of kind
// Unclassified. dst is reused (appended to from length 0). An expression
// that fails at run time (a dyn value of the wrong type, a negative seq) is
// an error naming its path, and the message yields nothing.
func (m *Mapping) Classify(dst []Incoming, msg proto.Message) ([]Incoming, error) {
	dst = dst[:0]
	if msg == nil {
		return dst, errors.New("classify: no message")
	}
	if got, want := msg.ProtoReflect().Descriptor().FullName(), m.method.Output().FullName(); got != want {
		return dst, fmt.Errorf("classify: got a %s, want the method's %s", got, want)
	}
	act := &activation{adapter: m.adapter, mRef: msg.ProtoReflect()}
	for _, r := range m.rules {
		v, err := act.eval(r.when, r.whenFast)
		if err != nil {
			return dst, fmt.Errorf("%s.when: %w", r.path, err)
		}
		b, ok := v.(bool)
		if !ok {
			// Type-checked as bool, but dyn() can hide another type.
			return dst, fmt.Errorf("%s.when: got %s, want bool", r.path, celTypeOf(v))
		}
		if !b {
			continue
		}
		if r.each == nil {
			in, err := r.read(act)
			if err != nil {
				return dst, err
			}
			return append(dst, in), nil
		}
		if r.eachFast != nil {
			if items, ok := r.eachFast.items(act.mRef, nil); ok {
				return r.readItems(dst, act, items)
			}
		}
		list, _, err := r.each.Eval(act)
		if err != nil {
			return dst, fmt.Errorf("%s.each: %w", r.path, err)
		}
		lister, ok := list.(traits.Lister)
		if !ok {
			return dst, fmt.Errorf("%s.each: yielded %s, not a list", r.path, list.Type())
		}
		n, _ := lister.Size().Value().(int64)
		if n > maxItems {
			return dst, fmt.Errorf("%s.each: %d items, more than %d", r.path, n, maxItems)
		}
		for i := int64(0); i < n; i++ {
			item := lister.Get(types.Int(i))
			act.it, act.itRef = item, reflectOf(item.Value())
			in, err := r.read(act)
			if err != nil {
				return dst, err
			}
			dst = append(dst, in)
		}
		act.it, act.itRef = nil, nil
		return dst, nil
	}
	return append(dst, Incoming{Kind: Unclassified}), nil
}

// readItems reads each item of a fast each, it bound to the item.
func (r *rule) readItems(dst []Incoming, act *activation, items []protoreflect.Message) ([]Incoming, error) {
	if len(items) > maxItems {
		return dst, fmt.Errorf("%s.each: %d items, more than %d", r.path, len(items), maxItems)
	}
	for _, item := range items {
		act.it, act.itRef = nil, item
		in, err := r.read(act)
		if err != nil {
			return dst, err
		}
		dst = append(dst, in)
	}
	act.it, act.itRef = nil, nil
	return dst, nil
}

// read evaluates a rule's fields.
func (r *rule) read(act *activation) (Incoming, error) {
	in := Incoming{Kind: r.kind}
	for _, f := range r.fields {
		if p, ok := f.fast.(*fastPath); ok && p.kind == pathScalar {
			// A plain scalar field: no boxing of its value.
			if v, ok := p.value(act.mRef, act.itRef); ok {
				if err := in.setValue(f.field, p.last().Kind(), v); err != nil {
					return in, fmt.Errorf("%s: %w", f.path, err)
				}
				in.has |= 1 << f.field
				continue
			}
		}
		v, err := act.eval(f.prg, f.fast)
		if err != nil {
			return in, fmt.Errorf("%s: %w", f.path, err)
		}
		if err := in.set(f.field, v); err != nil {
			return in, fmt.Errorf("%s: %w", f.path, err)
		}
		in.has |= 1 << f.field
	}
	return in, nil
}
