package protocol_test

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/bidikit/bidikit/harness/protocol"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// baseMapping is a small valid chat mapping; each error entry changes one
// line of it. Line numbers in the expectations count from its first line.
const baseMapping = `name: typo-test
protocol:
  method: bidikit.chat.v1.ChatService/Connect
  outgoing:
    join: '{"join": {"room": "{{room}}"}}'
    send: '{"send": {"room": "{{room}}", "body": "{{body}}", "sender_seq": {{sender_seq}}}}'
  incoming:
    delivery: {when: 'has(m.message)', seq: m.message.seq, room: m.message.room}
    ack:
      when: has(m.ack)
      seq: m.ack.seq
`

// chatDescriptors are the chat proto's plus grpc health (a unary method).
func chatDescriptors() *protocol.Descriptors {
	d, err := protocol.FromFileDescriptorSet(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{
		protodesc.ToFileDescriptorProto(chatv1.File_bidikit_chat_v1_chat_proto),
		protodesc.ToFileDescriptorProto(healthpb.File_grpc_health_v1_health_proto),
	}}, "test set")
	Expect(err).NotTo(HaveOccurred())
	return d
}

// mustSpec parses a mapping named custom.yaml.
func mustSpec(text string) *protocol.Spec {
	spec, err := protocol.ParseSpec("custom.yaml", []byte(text))
	Expect(err).NotTo(HaveOccurred())
	return spec
}

// compileText parses and compiles a mapping named custom.yaml.
func compileText(text string) (*protocol.Mapping, error) {
	spec, err := protocol.ParseSpec("custom.yaml", []byte(text))
	if err != nil {
		return nil, err
	}
	return protocol.Compile(spec, chatDescriptors())
}

var _ = Describe("Mapping errors", func() {
	It("compiles the base mapping (the entries below each break one thing)", func() {
		_, err := compileText(baseMapping)
		Expect(err).NotTo(HaveOccurred())
	})

	DescribeTable("name file:line:col, the field, and what was wrong",
		func(old, replacement string, want string) {
			Expect(strings.Contains(baseMapping, old)).To(BeTrue(), "the entry's old text %q is not in the base mapping", old)
			_, err := compileText(strings.Replace(baseMapping, old, replacement, 1))
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(Equal(want))
		},
		Entry("CEL: a typo in a field name lists the message's fields",
			"seq: m.message.seq", "seq: m.message.sequ",
			`custom.yaml:8:55: protocol.incoming.delivery.seq: undefined field 'sequ' on bidikit.chat.v1.Message; did you mean "seq"? (fields: room, seq, sender, client_msg_id, sender_seq, body, server_unix_nanos, client_sent_unix_nanos, replay)`),
		Entry("CEL: a typo on the top message",
			"when: has(m.ack)", "when: has(m.akc)",
			`custom.yaml:10:19: protocol.incoming.ack.when: undefined field 'akc' on bidikit.chat.v1.ServerEvent; did you mean "ack"? (fields: joined, message, ack, presence, typing, error, left, batch)`),
		Entry("CEL: a string where a seq is read",
			"seq: m.ack.seq", "seq: m.ack.room",
			`custom.yaml:11:12: protocol.incoming.ack.seq: m.ack.room has type string; want int or uint`),
		Entry("CEL: a constant seq reads nothing of the message",
			"seq: m.ack.seq", "seq: '1'",
			`custom.yaml:11:13: protocol.incoming.ack.seq: 1 reads nothing of the server message (a constant): a seq must come from m (or it, with each)`),
		Entry("CEL: a condition that is not a bool",
			"when: has(m.ack)", "when: m.ack",
			`custom.yaml:10:13: protocol.incoming.ack.when: m.ack has type bidikit.chat.v1.Ack; want bool`),
		Entry("CEL: a syntax error",
			"when: has(m.ack)", "when: has(m.ack",
			"custom.yaml:10:22: protocol.incoming.ack.when: Syntax error: missing ')' at '<EOF>'"),
		Entry("template: a typo in a field name lists the message's fields",
			`{"join": {"room": "{{room}}"}}`, `{"join": {"rom": "{{room}}"}}`,
			`custom.yaml:5:23: protocol.outgoing.join: unknown field "rom" in bidikit.chat.v1.Join; did you mean "room"?; fields: room, resume_after (rendered with sample values: {"join": {"rom": "room-1"}})`),
		Entry("template: bad JSON",
			`{"join": {"room": "{{room}}"}}`, `{"join": {"room": "{{room}}"}`,
			`custom.yaml:5:41: protocol.outgoing.join: unexpected EOF: the JSON ends too early (rendered with sample values: {"join": {"room": "room-1"})`),
		Entry("template: a value of the wrong type",
			`"sender_seq": {{sender_seq}}`, `"sender_seq": "{{body}}"`,
			`custom.yaml:6:76: protocol.outgoing.send: invalid value for uint64 field senderSeq: "sample \"body\" \\ text" (rendered with sample values: {"send": {"room": "room-1", "body": "sample \"body\" \\ text", "sender_seq": "sample \"body\" \\ text"}})`),
		Entry("template: an unknown placeholder",
			`"body": "{{body}}"`, `"body": "{{bdy}}"`,
			`custom.yaml:6:51: protocol.outgoing.send: unknown placeholder {{bdy}}; did you mean "body"?; placeholders here: room, body, client_msg_id, sender_seq, send_time_unix_nano, client, session, token`),
		Entry("template: a placeholder with no value there",
			`"sender_seq": {{sender_seq}}`, `"sender_seq": {{resume_seq}}`,
			`custom.yaml:6:76: protocol.outgoing.send: placeholder {{resume_seq}} has no value here; placeholders here: room, body, client_msg_id, sender_seq, send_time_unix_nano, client, session, token`),
		Entry("method: an unknown one lists the services",
			"ChatService/Connect", "ChatService/Stream",
			`custom.yaml:3:11: protocol.method: method "bidikit.chat.v1.ChatService/Stream": service bidikit.chat.v1.ChatService has no method "Stream"; methods: Connect (bidi-streaming)`),
		Entry("method: an unknown service",
			"bidikit.chat.v1.ChatService/Connect", "acme.chat.v1.Chat/Stream",
			`custom.yaml:3:11: protocol.method: method "acme.chat.v1.Chat/Stream": unknown service "acme.chat.v1.Chat" in test set; services: bidikit.chat.v1.ChatService, grpc.health.v1.Health`),
		Entry("method: not bidi streaming",
			"bidikit.chat.v1.ChatService/Connect", "grpc.health.v1.Health/Watch",
			`custom.yaml:3:11: protocol.method: method "grpc.health.v1.Health/Watch" is a server-streaming method: rpc Watch(grpc.health.v1.HealthCheckRequest) returns (stream grpc.health.v1.HealthCheckResponse); a custom protocol needs a bidirectional-streaming method (rpc M(stream A) returns (stream B))`),
		Entry("YAML: an unknown field of a rule lists the kind's fields",
			"      seq: m.ack.seq", "      sequ: m.ack.seq",
			`custom.yaml:11:7: protocol.incoming.ack.sequ: unknown field "sequ"; did you mean "seq"?; fields: when, each, room, seq, client_msg_id, sender_seq, duplicate, server_time`),
		Entry("YAML: a field a kind does not read",
			"      seq: m.ack.seq", "      sender: m.ack.room",
			`custom.yaml:11:7: protocol.incoming.ack.sender: unknown field "sender"; fields: when, each, room, seq, client_msg_id, sender_seq, duplicate, server_time`),
		Entry("YAML: an unknown kind",
			"    ack:\n", "    acks:\n",
			`custom.yaml:9:5: protocol.incoming.acks: unknown field "acks"; did you mean "ack"?; fields: delivery, ack, joined, left, error, ignore`),
		Entry("YAML: a rule without when",
			"      when: has(m.ack)\n", "",
			"custom.yaml:9:5: protocol.incoming.ack.when: missing: a CEL condition over m that is true for ack messages, e.g. when: 'has(m.ack)'"),
		Entry("YAML: a typo at the top of the block",
			"  outgoing:", "  outgoin:",
			`custom.yaml:4:3: protocol.outgoin: unknown field "outgoin"; did you mean "outgoing"?; fields: method, descriptors, metadata, room_name, echo, outgoing, incoming`),
	)

	It("points into a block scalar at the right line", func() {
		text := strings.Replace(baseMapping, `    send: '{"send": {"room": "{{room}}", "body": "{{body}}", "sender_seq": {{sender_seq}}}}'`,
			"    send: |\n      {\"send\": {\"room\": \"{{room}}\",\n                \"bdy\": \"{{body}}\"}}", 1)
		_, err := compileText(text)
		Expect(err).To(MatchError(HavePrefix(`custom.yaml:8:18: protocol.outgoing.send: unknown field "bdy" in bidikit.chat.v1.Send; did you mean "body"?`)))
	})

	It("reports every problem at once, in line order", func() {
		text := strings.Replace(strings.Replace(baseMapping, "seq: m.ack.seq", "seq: m.ack.sq", 1), `"room": "{{room}}"}}'`, `"rm": "{{room}}"}}'`, 1)
		_, err := compileText(text)
		Expect(err).To(HaveOccurred())
		lines := strings.Split(err.Error(), "\n")
		Expect(lines).To(HaveLen(2))
		Expect(lines[0]).To(HavePrefix(`custom.yaml:5:23: protocol.outgoing.join: unknown field "rm"`))
		Expect(lines[1]).To(HavePrefix(`custom.yaml:11:18: protocol.incoming.ack.seq: undefined field 'sq' on bidikit.chat.v1.Ack`))
	})

	It("takes a protoset beside the mapping, and one descriptor source only", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		set := writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto)
		Expect(os.Rename(set, filepath.Join(dir, "chat.protoset"))).To(Succeed())
		text := strings.Replace(baseMapping, "  outgoing:\n", "  descriptors: {protoset: chat.protoset}\n  outgoing:\n", 1)
		spec, err := protocol.ParseSpec(filepath.Join(dir, "custom.yaml"), []byte(text))
		Expect(err).NotTo(HaveOccurred())
		d, err := protocol.LoadDescriptors(ctx, spec, nil, "")
		Expect(err).NotTo(HaveOccurred())
		Expect(d.Source).To(Equal("protoset " + filepath.Join(dir, "chat.protoset")))

		text = strings.Replace(baseMapping, "  outgoing:\n", "  descriptors: {protoset: missing.protoset}\n  outgoing:\n", 1)
		spec, err = protocol.ParseSpec("custom.yaml", []byte(text))
		Expect(err).NotTo(HaveOccurred())
		_, err = protocol.LoadDescriptors(ctx, spec, nil, "")
		Expect(err).To(MatchError(HavePrefix("custom.yaml:4:27: protocol.descriptors.protoset: protoset: open missing.protoset: no such file or directory")))

		text = strings.Replace(baseMapping, "  outgoing:\n", "  descriptors: {protoset: a.protoset, reflection: true}\n  outgoing:\n", 1)
		_, err = protocol.ParseSpec("custom.yaml", []byte(text))
		Expect(err).To(MatchError("custom.yaml:4:16: protocol.descriptors: give one source: reflection, protoset or proto"))

		_, err = protocol.LoadDescriptors(ctx, mustSpec(baseMapping), nil, "")
		Expect(err).To(MatchError(ContainSubstring("descriptors come from server reflection, and no connection to a server was given")))
	}, SpecTimeout(10e9))

	It("checks metadata keys and room names", func() {
		_, err := compileText(strings.Replace(baseMapping, "  outgoing:\n", "  metadata: {Grpc-Timeout: '1S'}\n  outgoing:\n", 1))
		Expect(err).To(MatchError(`custom.yaml:4:14: protocol.metadata.Grpc-Timeout: metadata key "grpc-timeout": want lowercase letters, digits, '-', '_' or '.', not starting with grpc-`))
		_, err = compileText(strings.Replace(baseMapping, "  outgoing:\n", "  room_name: lobby\n  outgoing:\n", 1))
		Expect(err).To(MatchError("custom.yaml:4:14: protocol.room_name: room_name must contain {{index}} so that each room gets its own name"))
		_, err = compileText(strings.Replace(baseMapping, "  outgoing:\n", "  room_name: 'r-{{room}}'\n  outgoing:\n", 1))
		Expect(err).To(MatchError("custom.yaml:4:17: protocol.room_name: placeholder {{room}} has no value here; placeholders here: index"))
	})

	It("needs a protocol block, a method and incoming rules", func() {
		_, err := compileText("name: x\n")
		Expect(err).To(MatchError("custom.yaml: protocol: no protocol block: a custom service needs `protocol:` with at least method, outgoing and incoming"))
		_, err = compileText("protocol:\n  outgoing: {}\n")
		Expect(err).To(MatchError(And(
			ContainSubstring("custom.yaml:2:3: protocol.method: missing"),
			ContainSubstring("custom.yaml:2:3: protocol.incoming: missing"))))
		_, err = compileText("protocol:\n  method: a.B/C\n  incoming: {}\n")
		Expect(err).To(MatchError("custom.yaml:2:3: protocol.incoming: missing: at least one rule (delivery, ack, joined, left, error, ignore) is needed to read server messages"))
		_, err = compileText("protocol:\n  method: a.B/C\n  incoming: {acks: {when: 'true'}}\n")
		Expect(err).To(MatchError(`custom.yaml:3:14: protocol.incoming.acks: unknown field "acks"; did you mean "ack"?; fields: delivery, ack, joined, left, error, ignore`), "one error, not two")
	})
})
