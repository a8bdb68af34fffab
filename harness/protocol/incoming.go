package protocol

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/reflect/protoreflect"
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

// set stores one field's value as CEL's Value() gives it.
func (in *Incoming) set(f Field, v any) error {
	switch x := v.(type) {
	case string:
		return in.setString(f, x)
	case int64:
		return in.setInt(f, x)
	case uint64:
		return in.setUint(f, x)
	case bool:
		return in.setBool(f, x)
	case time.Time:
		return in.setTime(f, x.UnixNano())
	}
	return fmt.Errorf("got %s, want %s", celTypeOf(v), fieldTypes[f].wants())
}

// setValue stores a scalar field's protoreflect value as CEL would read it
// (enums as int).
func (in *Incoming) setValue(f Field, k protoreflect.Kind, v protoreflect.Value) error {
	switch k {
	case protoreflect.StringKind:
		return in.setString(f, v.String())
	case protoreflect.BoolKind:
		return in.setBool(f, v.Bool())
	case protoreflect.EnumKind:
		return in.setInt(f, int64(v.Enum()))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return in.setInt(f, v.Int())
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return in.setUint(f, v.Uint())
	}
	return fmt.Errorf("got a %s field, want %s", k, fieldTypes[f].wants())
}

func (in *Incoming) setString(f Field, s string) error {
	switch fieldTypes[f] {
	case vtKey:
		in.Room = s
	case vtText:
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
	case vtCode:
		var c codes.Code
		if err := c.UnmarshalJSON([]byte(strconv.Quote(strings.ToUpper(s)))); err != nil {
			return fmt.Errorf("got %q, not a gRPC status code name (e.g. RESOURCE_EXHAUSTED)", s)
		}
		in.Code = c
	default:
		return fmt.Errorf("got string, want %s", fieldTypes[f].wants())
	}
	return nil
}

func (in *Incoming) setInt(f Field, n int64) error {
	switch fieldTypes[f] {
	case vtKey:
		in.Room = strconv.FormatInt(n, 10)
	case vtCount:
		if n < 0 {
			return fmt.Errorf("got %d, want a number not below 0", n)
		}
		in.setCount(f, uint64(n))
	case vtTime:
		return in.setTime(f, n)
	case vtCode:
		if n < 0 || n > int64(codes.Unauthenticated) {
			return fmt.Errorf("got %d, not a gRPC status code (0-16)", n)
		}
		in.Code = codes.Code(n)
	default:
		return fmt.Errorf("got int, want %s", fieldTypes[f].wants())
	}
	return nil
}

func (in *Incoming) setUint(f Field, n uint64) error {
	switch fieldTypes[f] {
	case vtKey:
		in.Room = strconv.FormatUint(n, 10)
	case vtCount:
		in.setCount(f, n)
	case vtTime:
		return in.setTime(f, int64(n))
	case vtCode:
		if n > uint64(codes.Unauthenticated) {
			return fmt.Errorf("got %d, not a gRPC status code (0-16)", n)
		}
		in.Code = codes.Code(n)
	default:
		return fmt.Errorf("got uint, want %s", fieldTypes[f].wants())
	}
	return nil
}

func (in *Incoming) setCount(f Field, n uint64) {
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
}

func (in *Incoming) setBool(f Field, b bool) error {
	switch f {
	case FieldReplay:
		in.Replay = b
	case FieldDuplicate:
		in.Duplicate = b
	case FieldResumeComplete:
		in.ResumeComplete = b
	default:
		return fmt.Errorf("got bool, want %s", fieldTypes[f].wants())
	}
	return nil
}

func (in *Incoming) setTime(f Field, unixNano int64) error {
	switch {
	case unixNano < 0:
		return fmt.Errorf("got %d: not unix nanoseconds (negative, or above the int64 range)", unixNano)
	case unixNano != 0 && unixNano < minUnixNano:
		// A send time in seconds or milliseconds, read as nanoseconds,
		// would make every latency decades long.
		return fmt.Errorf("got %d: as unix nanoseconds that is before 2000; are these seconds or milliseconds? (multiply: m.ts * 1000000 for milliseconds)", unixNano)
	}
	switch f {
	case FieldSentAt:
		in.SentAt = unixNano
	case FieldServerTime:
		in.ServerTime = unixNano
	default:
		return fmt.Errorf("got a time, want %s", fieldTypes[f].wants())
	}
	return nil
}

// minUnixNano is 2000-01-01 in unix nanoseconds: no send time of a run
// is older.
const minUnixNano = 946_684_800 * int64(time.Second)

// celTypeOf names a value's CEL type for messages.
func celTypeOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "int"
	case uint64:
		return "uint"
	case bool:
		return "bool"
	case float64:
		return "double"
	case time.Time:
		return "google.protobuf.Timestamp"
	}
	return fmt.Sprintf("%T", v)
}
