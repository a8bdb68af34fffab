package protocol

import "fmt"

// Kind is what an incoming server message means to bidikit.
type Kind uint8

// The kinds a mapping can classify a server message as; Unclassified is a
// message no rule matched.
const (
	Unclassified Kind = iota
	Delivery          // a room message delivered to this member (live or replayed)
	Ack               // the server ordered (and stored) one of this client's sends
	Joined            // a join (or resume) was accepted
	Left              // a leave was confirmed
	ErrorEvent        // a recoverable error answering one client message
	Ignored           // a message the mapping says to skip (presence, typing, ...)
)

var kindNames = [...]string{"unclassified", "delivery", "ack", "joined", "left", "error", "ignore"}

// String is the kind's name in a mapping: "delivery", "ack", ...
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// Field is one value a rule reads out of a server message.
type Field uint8

// The fields a rule can read; kindFields says which kind reads which.
const (
	FieldRoom           Field = iota // room name or key (string; an integer is rendered in decimal)
	FieldSeq                         // the room sequence number (delivery), or the one an ack assigns
	FieldSender                      // who sent a delivered message
	FieldClientMsgID                 // the client message id a delivery, ack or error refers to
	FieldSenderSeq                   // the sender's own sequence number
	FieldSentAt                      // the client's send time echoed back (unix ns or Timestamp)
	FieldServerTime                  // when the server ordered the message (unix ns or Timestamp)
	FieldBody                        // the message text
	FieldReplay                      // true for a replayed (resumed) delivery
	FieldDuplicate                   // true for an ack of a resend already stored
	FieldHeadSeq                     // the room's newest seq when a join was accepted
	FieldReplayFrom                  // the first seq a resume replays (0 when none)
	FieldResumeComplete              // false when a resume could not replay everything asked
	FieldCode                        // gRPC status code of an error (number or name)
	FieldMessage                     // an error's text
	numFields
)

var fieldNames = [numFields]string{
	"room", "seq", "sender", "client_msg_id", "sender_seq", "sent_at", "server_time",
	"body", "replay", "duplicate", "head_seq", "replay_from", "resume_complete", "code", "message",
}

// String is the field's name in a mapping: "seq", "client_msg_id", ...
func (f Field) String() string {
	if f < numFields {
		return fieldNames[f]
	}
	return fmt.Sprintf("field(%d)", f)
}

// valueType is what a field expression must evaluate to.
type valueType uint8

const (
	vtKey   valueType = iota // string, int or uint (a room key)
	vtCount                  // int or uint, not negative
	vtText                   // string
	vtTime                   // int or uint (unix ns) or google.protobuf.Timestamp
	vtFlag                   // bool
	vtCode                   // int or uint (a gRPC code number) or string (its name)
)

var fieldTypes = [numFields]valueType{
	FieldRoom: vtKey, FieldSeq: vtCount, FieldSender: vtText, FieldClientMsgID: vtText,
	FieldSenderSeq: vtCount, FieldSentAt: vtTime, FieldServerTime: vtTime, FieldBody: vtText,
	FieldReplay: vtFlag, FieldDuplicate: vtFlag, FieldHeadSeq: vtCount, FieldReplayFrom: vtCount,
	FieldResumeComplete: vtFlag, FieldCode: vtCode, FieldMessage: vtText,
}

// wants describes a valueType for messages.
func (t valueType) wants() string {
	switch t {
	case vtKey:
		return "string, int or uint"
	case vtCount:
		return "int or uint"
	case vtText:
		return "string"
	case vtTime:
		return "int or uint (unix nanoseconds) or google.protobuf.Timestamp"
	case vtFlag:
		return "bool"
	case vtCode:
		return "int or uint (a gRPC status code number) or string (its name)"
	}
	return "?"
}

// kindFields lists the fields each kind may read, in the order docs show them.
var kindFields = map[Kind][]Field{
	Delivery:   {FieldRoom, FieldSeq, FieldSender, FieldClientMsgID, FieldSenderSeq, FieldSentAt, FieldServerTime, FieldBody, FieldReplay},
	Ack:        {FieldRoom, FieldSeq, FieldClientMsgID, FieldSenderSeq, FieldDuplicate, FieldServerTime},
	Joined:     {FieldRoom, FieldHeadSeq, FieldReplayFrom, FieldResumeComplete},
	Left:       {FieldRoom},
	ErrorEvent: {FieldCode, FieldMessage, FieldRoom, FieldClientMsgID},
	Ignored:    {},
}

// incomingKinds are the kinds a mapping's incoming block may name.
var incomingKinds = []Kind{Delivery, Ack, Joined, Left, ErrorEvent, Ignored}

func kindByName(name string) (Kind, bool) {
	for _, k := range incomingKinds {
		if k.String() == name {
			return k, true
		}
	}
	return Unclassified, false
}

func kindNameList() []string {
	out := make([]string, len(incomingKinds))
	for i, k := range incomingKinds {
		out[i] = k.String()
	}
	return out
}

// The outgoing messages a mapping can define; extras are named by the user
// under outgoing.extras.
const (
	OutJoin   = "join"   // subscribe to a room, live from now on
	OutResume = "resume" // subscribe to a room replaying what followed {{resume_seq}}
	OutLeave  = "leave"
	OutSend   = "send"
)

var outgoingNames = []string{OutJoin, OutResume, OutLeave, OutSend}
