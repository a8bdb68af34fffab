package protocol_test

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/bidikit/bidikit/harness/protocol"
)

// acmeProto is a chat protocol bidikit did not design (the shape of the
// DESIGN sketch): integer channels, timestamps, an enum error code next to
// a code name, a batch, maps and lists in what clients send.
const acmeProto = `syntax = "proto3";
package acme.chat.v1;
import "google/protobuf/timestamp.proto";

service Chat {
  rpc Stream(stream ClientMsg) returns (stream ServerMsg);
}
message ClientMsg {
  oneof kind {
    Subscribe subscribe = 1;
    Publish publish = 2;
  }
}
message Subscribe {
  int32 channel = 1;
  optional int64 since = 2;
}
message Publish {
  int32 channel = 1;
  string text = 2;
  string id = 3;
  int64 seq = 4;
  google.protobuf.Timestamp at = 5;
  map<string, string> tags = 6;
  repeated Attachment attachments = 7;
}
message Attachment { string name = 1; }
message ServerMsg {
  oneof kind {
    Delivery message = 1;
    Ack ack = 2;
    Failure error = 3;
    Deliveries batch = 4;
  }
}
message Delivery {
  int32 channel = 1;
  int64 offset = 2;
  string user = 3;
  google.protobuf.Timestamp at = 4;
}
message Deliveries { repeated Delivery items = 1; }
message Ack {
  string id = 1;
  int64 offset = 2;
}
enum Code {
  CODE_OK = 0;
  CODE_INVALID = 3;
  CODE_BUSY = 8;
}
message Failure {
  Code code = 1;
  string reason = 2;
  string grpc_code = 3;
}
`

const acmeMapping = `protocol:
  method: acme.chat.v1.Chat/Stream
  descriptors:
    proto: {files: [acme.proto]}
  room_name: '{{index}}'
  outgoing:
    join: '{"subscribe": {"channel": {{room}}}}'
    resume: '{"subscribe": {"channel": {{room}}, "since": {{resume_seq}}}}'
    send: >-
      {"publish": {"channel": {{room}}, "text": "{{body}}", "id": "{{client_msg_id}}",
      "seq": {{sender_seq}}, "at": "2024-01-02T03:04:05Z",
      "tags": {"client": "{{client}}"}, "attachments": [{"name": "{{body}}"}]}}
  incoming:
    delivery:
      when: has(m.message) || has(m.batch)
      each: 'has(m.batch) ? m.batch.items : [m.message]'
      room: it.channel
      seq: it.offset
      sender: it.user
      server_time: it.at
    ack: {when: 'has(m.ack)', client_msg_id: m.ack.id, seq: m.ack.offset}
    error: {when: 'has(m.error) && m.error.grpc_code == ""', code: m.error.code, message: m.error.reason}
    ignore: {when: 'has(m.error)'}
`

var _ = Describe("A protocol bidikit did not design", func() {
	var (
		m    *protocol.Mapping
		d    *protocol.Descriptors
		file string
	)

	BeforeEach(func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "acme.proto"), []byte(acmeProto), 0o644)).To(Succeed())
		file = filepath.Join(dir, "acme.yaml")
		Expect(os.WriteFile(file, []byte(acmeMapping), 0o644)).To(Succeed())
		spec, err := protocol.ParseSpec(file, []byte(acmeMapping))
		Expect(err).NotTo(HaveOccurred())
		d, err = protocol.LoadDescriptors(ctx, spec, nil, "")
		Expect(err).NotTo(HaveOccurred(), "the .proto file is found beside the mapping")
		m, err = protocol.Compile(spec, d)
		Expect(err).NotTo(HaveOccurred())
	}, NodeTimeout(20*time.Second))

	// server builds a server message from its JSON form.
	server := func(json string) *dynamicpb.Message {
		msg := dynamicpb.NewMessage(m.Method().Output())
		Expect(protojson.Unmarshal([]byte(json), msg)).To(Succeed())
		return msg
	}

	It("encodes integer rooms, timestamps, maps and lists", func() {
		msg, err := m.Encode(protocol.OutSend, protocol.Values{Room: m.RoomName(7), Body: "b", ClientMsgID: "id-1", SenderSeq: 3, Client: "c-1"})
		Expect(err).NotTo(HaveOccurred())
		Expect(protojson.Format(msg)).To(MatchJSON(`{"publish": {"channel": 7, "text": "b", "id": "id-1", "seq": "3",
			"at": "2024-01-02T03:04:05Z", "tags": {"client": "c-1"}, "attachments": [{"name": "b"}]}}`))
		msg, err = m.Encode(protocol.OutResume, protocol.Values{Room: m.RoomName(2), ResumeSeq: 40})
		Expect(err).NotTo(HaveOccurred())
		Expect(protojson.Format(msg)).To(MatchJSON(`{"subscribe": {"channel": 2, "since": "40"}}`))
		_, err = m.Encode(protocol.OutSend, protocol.Values{Room: "not-a-number"})
		Expect(err).To(MatchError(ContainSubstring("protocol.outgoing.send rendered")), "a room name the template cannot carry is an error, not a zero")
	})

	It("reads a batch item by item, with timestamps and integer rooms", func() {
		got, err := m.Classify(nil, server(`{"batch": {"items": [
			{"channel": 7, "offset": 1, "user": "u", "at": "2024-01-02T03:04:05.000000006Z"},
			{"channel": 7, "offset": 2, "user": "v"}]}}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(HaveLen(2))
		Expect(got[0].Kind).To(Equal(protocol.Delivery))
		Expect(got[0].Room).To(Equal(m.RoomName(7)))
		Expect([]uint64{got[0].Seq, got[1].Seq}).To(Equal([]uint64{1, 2}))
		Expect(got[0].ServerTime).To(Equal(time.Date(2024, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()))
		Expect(got[1].Sender).To(Equal("v"))
		Expect(got[0].Has(protocol.FieldServerTime)).To(BeTrue())
		Expect(got[0].Has(protocol.FieldClientMsgID)).To(BeFalse())

		By("a single message is one item")
		got, err = m.Classify(got, server(`{"message": {"channel": 3, "offset": 9}}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(HaveLen(1))
		Expect(got[0].Seq).To(BeEquivalentTo(9))
	})

	It("reads error codes from an enum, in rule order, and skips what it is told to", func() {
		got, err := m.Classify(nil, server(`{"error": {"code": "CODE_BUSY", "reason": "slow down"}}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(ConsistOf(And(
			HaveField("Kind", protocol.ErrorEvent), HaveField("Code", codes.ResourceExhausted), HaveField("Message", "slow down"))))
		got, err = m.Classify(nil, server(`{"error": {"grpc_code": "UNAVAILABLE"}}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(got[0].Kind).To(Equal(protocol.Ignored))
		got, err = m.Classify(nil, server(`{}`))
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(ConsistOf(HaveField("Kind", protocol.Unclassified)))
	})

	It("refuses values it cannot trust at run time, naming the field", func() {
		_, err := m.Classify(nil, server(`{"ack": {"id": "x", "offset": "-4"}}`))
		Expect(err).To(MatchError("protocol.incoming.ack.seq: got -4, want a number not below 0"))
		_, err = m.Classify(nil, dynamicpb.NewMessage(m.Method().Input()))
		Expect(err).To(MatchError("classify: got a acme.chat.v1.ClientMsg, want the method's acme.chat.v1.ServerMsg"))
	})

	It("finds a typo inside a list of messages in a folded template", func() {
		text := strings.Replace(acmeMapping, `[{"name": "{{body}}"}]`, `[{"nme": "{{body}}"}]`, 1)
		spec, err := protocol.ParseSpec(file, []byte(text))
		Expect(err).NotTo(HaveOccurred())
		_, err = protocol.Compile(spec, d)
		Expect(err).To(MatchError(HavePrefix(file + `:12:59: protocol.outgoing.send: unknown field "nme" in acme.chat.v1.Attachment; did you mean "name"?; fields: name (rendered`)))
	})

	It("says what it does not map", func() {
		Expect(m.Missing(protocol.In(protocol.Delivery, protocol.FieldClientMsgID), protocol.Out(protocol.OutLeave), protocol.In(protocol.Ack, protocol.FieldSeq))).
			To(Equal([]protocol.Path{"incoming.delivery.client_msg_id", "outgoing.leave"}))
		Expect(protocol.MissingReason(m.Missing(protocol.In(protocol.Delivery, protocol.FieldClientMsgID), protocol.Out(protocol.OutLeave)))).
			To(Equal("protocol.incoming.delivery.client_msg_id, protocol.outgoing.leave are not mapped"))
	})
})
