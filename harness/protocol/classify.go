package protocol

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// Incoming is what one server message (or one item of a batch) means: its
// Kind and the fields its rule read. Has says which fields were read: a
// field the rule does not map is zero and not Has, never guessed.
type Incoming struct {
	Kind           Kind
	Room           string // an integer room key is rendered in decimal
	Seq            uint64
	Sender         string
	ClientMsgID    string
	SenderSeq      uint64
	SentAt         int64 // unix nanoseconds (the client's send time, echoed)
	ServerTime     int64 // unix nanoseconds
	Body           string
	Replay         bool
	Duplicate      bool
	HeadSeq        uint64
	ReplayFrom     uint64
	ResumeComplete bool
	Code           codes.Code
	Message        string
	has            uint32
}

// Has says whether the rule that classified this message read f.
func (in *Incoming) Has(f Field) bool { return in.has&(1<<f) != 0 }

// rule is one compiled incoming rule.
type rule struct {
	kind   Kind
	path   string
	when   cel.Program
	each   cel.Program // nil: the message is one item
	fields []fieldProgram
}

type fieldProgram struct {
	field Field
	path  string
	prg   cel.Program
}

// maxItems bounds the items one message's each expression may yield.
const maxItems = 1 << 16

// Classify reads one server message: the first rule (in the mapping's
// order) whose when is true decides its kind, and its field expressions
// fill the Incoming. A rule with each yields one Incoming per item (a batch
// of deliveries); a message no rule matches is one Incoming of kind
// Unclassified. dst is reused (appended to from length 0). An expression
// that fails at run time (a dyn value of the wrong type, a negative seq) is
// an error naming its path.
func (m *Mapping) Classify(dst []Incoming, msg proto.Message) ([]Incoming, error) {
	dst = dst[:0]
	if msg == nil {
		return dst, errors.New("classify: no message")
	}
	if got, want := msg.ProtoReflect().Descriptor().FullName(), m.method.Output().FullName(); got != want {
		return dst, fmt.Errorf("classify: got a %s, want the method's %s", got, want)
	}
	act := &activation{m: m.adapter.NativeToValue(msg)}
	for _, r := range m.rules {
		v, _, err := r.when.Eval(act)
		if err != nil {
			return dst, fmt.Errorf("protocol.%s.when: %w", strings.TrimPrefix(r.path, "protocol."), err)
		}
		if b, ok := v.Value().(bool); !ok || !b {
			continue
		}
		if r.each == nil {
			in, err := r.read(act)
			return append(dst, in), err
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
			act.it = lister.Get(types.Int(i))
			in, err := r.read(act)
			if err != nil {
				return dst, err
			}
			dst = append(dst, in)
		}
		act.it = nil
		return dst, nil
	}
	return append(dst, Incoming{Kind: Unclassified}), nil
}

// read evaluates a rule's fields.
func (r *rule) read(act *activation) (Incoming, error) {
	in := Incoming{Kind: r.kind}
	for _, f := range r.fields {
		v, _, err := f.prg.Eval(act)
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

// set stores one field's value, converting as its type allows.
func (in *Incoming) set(f Field, v ref.Val) error {
	native := v.Value()
	switch fieldTypes[f] {
	case vtKey:
		s, err := asKey(native)
		in.Room = s
		return err
	case vtCount:
		n, err := asCount(native)
		switch f {
		case FieldSeq:
			in.Seq = n
		case FieldSenderSeq:
			in.SenderSeq = n
		case FieldHeadSeq:
			in.HeadSeq = n
		case FieldReplayFrom:
			in.ReplayFrom = n
		}
		return err
	case vtText:
		s, ok := native.(string)
		if !ok {
			return fmt.Errorf("got %s, want string", v.Type())
		}
		switch f {
		case FieldSender:
			in.Sender = s
		case FieldClientMsgID:
			in.ClientMsgID = s
		case FieldBody:
			in.Body = s
		case FieldMessage:
			in.Message = s
		}
	case vtTime:
		t, err := asUnixNano(native)
		if f == FieldSentAt {
			in.SentAt = t
		} else {
			in.ServerTime = t
		}
		return err
	case vtFlag:
		b, ok := native.(bool)
		if !ok {
			return fmt.Errorf("got %s, want bool", v.Type())
		}
		switch f {
		case FieldReplay:
			in.Replay = b
		case FieldDuplicate:
			in.Duplicate = b
		case FieldResumeComplete:
			in.ResumeComplete = b
		}
	case vtCode:
		c, err := asCode(native)
		in.Code = c
		return err
	}
	return nil
}

func asKey(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	}
	return "", fmt.Errorf("got %T, want string, int or uint", v)
}

func asCount(v any) (uint64, error) {
	switch x := v.(type) {
	case uint64:
		return x, nil
	case int64:
		if x < 0 {
			return 0, fmt.Errorf("got %d, want a number not below 0", x)
		}
		return uint64(x), nil
	}
	return 0, fmt.Errorf("got %T, want int or uint", v)
}

func asUnixNano(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case uint64:
		return int64(x), nil
	case time.Time:
		return x.UnixNano(), nil
	}
	return 0, fmt.Errorf("got %T, want unix nanoseconds or a timestamp", v)
}

func asCode(v any) (codes.Code, error) {
	switch x := v.(type) {
	case int64:
		if x < 0 || x > int64(codes.Unauthenticated) {
			return codes.Unknown, fmt.Errorf("got %d, not a gRPC status code (0-16)", x)
		}
		return codes.Code(x), nil
	case uint64:
		if x > uint64(codes.Unauthenticated) {
			return codes.Unknown, fmt.Errorf("got %d, not a gRPC status code (0-16)", x)
		}
		return codes.Code(x), nil
	case string:
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(strconv.Quote(strings.ToUpper(x)))); err == nil {
			return c, nil
		}
		return codes.Unknown, fmt.Errorf("got %q, not a gRPC status code name (e.g. RESOURCE_EXHAUSTED)", x)
	}
	return codes.Unknown, fmt.Errorf("got %T, want a gRPC status code", v)
}
