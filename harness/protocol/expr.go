package protocol

import (
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"cel.dev/cel-go/parser"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// CEL is cel.dev/cel-go, the module's name from v0.32 on (github.com/google/cel-go
// stops at v0.31): new fixes land there only.

// exprCompiler compiles one mapping's CEL expressions against the server
// message type; it owns the problems it finds until Compile joins them.
type exprCompiler struct {
	file string
	desc *Descriptors
	msg  protoreflect.MessageDescriptor
	base *cel.Env // m declared
	errs *errorList
}

func newExprCompiler(file string, d *Descriptors, msg protoreflect.MessageDescriptor, errs *errorList) (*exprCompiler, error) {
	env, err := cel.NewEnv(
		cel.TypeDescs(d.Files),
		cel.Variable("m", cel.ObjectType(string(msg.FullName()))),
	)
	if err != nil {
		return nil, fmt.Errorf("CEL environment for %s: %w", msg.FullName(), err)
	}
	return &exprCompiler{file: file, desc: d, msg: msg, base: env, errs: errs}, nil
}

// withItem is the environment of a rule with `each`: it is one item.
func (c *exprCompiler) withItem(item *cel.Type) (*cel.Env, error) {
	return c.base.Extend(cel.Variable("it", item))
}

// compile type-checks t in env and builds its program; accept says whether
// the output type fits, want describes what fits. Problems are recorded at
// the offending character; ok is false then.
func (c *exprCompiler) compile(env *cel.Env, t Text, accept func(*cel.Type) bool, want string) (*compiled, bool) {
	if strings.TrimSpace(t.Value) == "" {
		c.errs.add(t.errorf(c.file, 0, "empty expression; want a CEL expression of type %s", want))
		return nil, false
	}
	ast, iss := env.Compile(t.Value)
	if iss != nil && iss.Err() != nil {
		for _, e := range iss.Errors() {
			off := t.offset(e.Location.Line(), e.Location.Column())
			var field string
			if _, err := fmt.Sscanf(e.Message, "undefined field '%s", &field); err == nil && off < len(t.Value) {
				// CEL points at the select's dot or the has( macro: point at the name.
				if i := strings.Index(t.Value[off:], strings.TrimSuffix(field, "'")); i >= 0 {
					off += i
				}
			}
			line, col := t.At(off)
			c.errs.add(&Error{File: c.file, Line: line, Col: col, Path: t.Path, Msg: c.explain(env, t.Value, e)})
		}
		return nil, false
	}
	out := ast.OutputType()
	if !accept(out) {
		c.errs.add(t.errorf(c.file, 0, "%s has type %s; want %s", strings.TrimSpace(t.Value), typeName(out), want))
		return nil, false
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		c.errs.add(t.errorf(c.file, 0, "%v", err))
		return nil, false
	}
	return &compiled{prg: prg, out: out, ast: ast}, true
}

// compiled is one type-checked expression.
type compiled struct {
	prg cel.Program
	out *cel.Type
	ast *cel.Ast
}

// explain rewrites a CEL error so that an undefined field names the
// message it was looked up on and that message's fields.
func (c *exprCompiler) explain(env *cel.Env, src string, e *cel.Error) string {
	msg := e.Message
	if !strings.HasPrefix(msg, "undefined field ") || e.ExprID == 0 {
		return msg
	}
	parsed, iss := env.Parse(src)
	if iss != nil && iss.Err() != nil {
		return msg
	}
	native := parsed.NativeRep()
	found := celast.MatchDescendants(celast.NavigateAST(native), func(n celast.NavigableExpr) bool {
		return n.ID() == e.ExprID && n.Kind() == celast.SelectKind
	})
	if len(found) == 0 {
		return msg
	}
	operandSrc, err := parser.Unparse(found[0].AsSelect().Operand(), native.SourceInfo())
	if err != nil {
		return msg
	}
	operand, iss := env.Compile(operandSrc)
	if iss != nil && iss.Err() != nil {
		return msg
	}
	md := c.messageOf(operand.OutputType())
	if md == nil {
		return msg
	}
	field := found[0].AsSelect().FieldName()
	names := fieldNameList(md)
	return fmt.Sprintf("undefined field '%s' on %s%s (fields: %s)", field, md.FullName(), suggest(field, names), strings.Join(names, ", "))
}

// messageOf is the descriptor of a CEL message type, or nil.
func (c *exprCompiler) messageOf(t *cel.Type) protoreflect.MessageDescriptor {
	if t == nil || t.Kind() != types.StructKind {
		return nil
	}
	d, err := c.desc.Files.FindDescriptorByName(protoreflect.FullName(t.TypeName()))
	if err != nil {
		return nil
	}
	md, _ := d.(protoreflect.MessageDescriptor)
	return md
}

// accepts says which CEL output types a field of type vt takes; dyn is
// taken and checked when the rule runs.
func accepts(vt valueType) func(*cel.Type) bool {
	return func(t *cel.Type) bool {
		k := t.Kind()
		if k == types.DynKind || k == types.AnyKind {
			return true
		}
		switch vt {
		case vtKey:
			return k == types.StringKind || k == types.IntKind || k == types.UintKind
		case vtCount:
			return k == types.IntKind || k == types.UintKind
		case vtText:
			return k == types.StringKind
		case vtTime:
			return k == types.IntKind || k == types.UintKind || k == types.TimestampKind
		case vtFlag:
			return k == types.BoolKind
		case vtCode:
			return k == types.IntKind || k == types.UintKind || k == types.StringKind
		}
		return false
	}
}

func acceptBool(t *cel.Type) bool { return t.Kind() == types.BoolKind || t.Kind() == types.DynKind }

func acceptList(t *cel.Type) bool { return t.Kind() == types.ListKind || t.Kind() == types.DynKind }

// typeName renders a CEL type for messages: "string", "bidikit.chat.v1.Message", "list(...)".
func typeName(t *cel.Type) string {
	if t == nil {
		return "?"
	}
	return t.String()
}

// activation binds m (and it) for one evaluation without a map; mRef and
// itRef are the same messages for fastPath.
type activation struct {
	adapter     types.Adapter
	m, it       any // CEL values, made when CEL first needs them
	mRef, itRef protoreflect.Message
}

// eval runs one expression: its fastPath when it has one that applies,
// else its CEL program. The value is CEL's Value() (bool, int64, uint64,
// string, time.Time, ...).
func (a *activation) eval(prg cel.Program, fast fastExpr) (any, error) {
	if fast != nil {
		if v, ok := fast.eval(a.mRef, a.itRef); ok {
			return v, nil
		}
	}
	v, _, err := prg.Eval(a)
	if err != nil {
		return nil, err
	}
	return v.Value(), nil
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "m":
		if a.m == nil {
			a.m = a.adapter.NativeToValue(a.mRef.Interface())
		}
		return a.m, true
	case "it":
		if a.it != nil {
			return a.it, true
		}
		if a.itRef != nil {
			return a.itRef.Interface(), true // an item the fast path listed
		}
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
