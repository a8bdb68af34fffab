package protocol_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/bidikit/bidikit/harness/protocol"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// classifyBoth classifies msg with m and with m's all-CEL copy and
// requires the same results and errors.
func classifyBoth(m *protocol.Mapping, msg proto.Message) []protocol.Incoming {
	fast, errFast := m.Classify(nil, msg)
	slow, errSlow := protocol.WithoutFastPath(m).Classify(nil, msg)
	if errSlow != nil {
		Expect(errFast).To(MatchError(errSlow.Error()))
	} else {
		Expect(errFast).NotTo(HaveOccurred())
	}
	Expect(fast).To(Equal(slow), "fast path and CEL disagree on %v", msg)
	return fast
}

var _ = Describe("The field-path fast path", func() {
	chatEvents := []string{
		`{"message": {"room": "r", "seq": 5, "sender": "a", "clientMsgId": "c", "senderSeq": 3, "body": "hi", "serverUnixNanos": "1764720000000000007", "clientSentUnixNanos": "1764720000000000006", "replay": true}}`,
		`{"message": {}}`,
		`{"batch": {"messages": [{"room": "r", "seq": 1}, {"room": "r", "seq": 2, "sender": "b"}]}}`,
		`{"batch": {}}`,
		`{"ack": {"room": "r", "clientMsgId": "c", "seq": 9, "duplicate": true, "serverUnixNanos": "1764720000000000003"}}`,
		`{"joined": {"room": "r", "headSeq": 4, "replayFrom": 2, "resumeComplete": true}}`,
		`{"error": {"code": 8, "message": "slow down", "room": "r", "clientMsgId": "c"}}`,
		`{"error": {"code": 99}}`,
		`{"left": {"room": "r"}}`,
		`{"presence": {"room": "r", "user": "u"}}`,
		`{}`,
	}

	It("says a when that yields no bool at run time (dyn hides its type from the checker)", func() {
		d, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		spec, err := protocol.ParseSpec("dyn.yaml", []byte(`protocol:
  method: bidikit.chat.v1.ChatService/Connect
  outgoing:
    join: '{"join": {"room": "{{room}}"}}'
  incoming:
    delivery: {when: 'dyn(m.message.room)', seq: m.message.seq, room: m.message.room}
`))
		Expect(err).NotTo(HaveOccurred())
		m, err := protocol.Compile(spec, d)
		Expect(err).NotTo(HaveOccurred())
		msg := dynamicpb.NewMessage(m.Method().Output())
		Expect(protojson.Unmarshal([]byte(`{"message": {"room": "r", "seq": 1}}`), msg)).To(Succeed())
		_, err = m.Classify(nil, msg)
		Expect(err).To(MatchError("protocol.incoming.delivery.when: got string, want bool"))
	})

	It("refuses a send time that is no unix nanoseconds of this century (milliseconds, or a wrapped uint64)", func() {
		d, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		m := compileFile("chat.yaml", d)
		for js, want := range map[string]string{
			`{"message": {"room": "r", "seq": 5, "clientSentUnixNanos": "1764720000000"}}`:        "are these seconds or milliseconds?",
			`{"message": {"room": "r", "seq": 5, "clientSentUnixNanos": "-1764720000000000000"}}`: "not unix nanoseconds (negative",
		} {
			msg := dynamicpb.NewMessage(m.Method().Output())
			Expect(protojson.Unmarshal([]byte(js), msg)).To(Succeed())
			_, err := m.Classify(nil, msg)
			Expect(err).To(MatchError(ContainSubstring(want)), js)
			Expect(err).To(MatchError(ContainSubstring("sent_at")), "names the field: %v", err)
		}
	})

	It("gives CEL's results on the chat mapping, and takes most expressions off CEL", func() {
		d, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		m := compileFile("chat.yaml", d)
		fast, all := protocol.FastPaths(m)
		Expect(all).To(Equal(30))
		Expect(fast).To(Equal(30), "plain paths, has(), ||, and a ?: of [m.message] and m.batch.messages")
		kinds := map[protocol.Kind]int{}
		for _, js := range chatEvents {
			msg := dynamicpb.NewMessage(m.Method().Output())
			Expect(protojson.Unmarshal([]byte(js), msg)).To(Succeed())
			for _, in := range classifyBoth(m, msg) {
				kinds[in.Kind]++
			}
		}
		Expect(kinds).To(Equal(map[protocol.Kind]int{protocol.Delivery: 4, protocol.Ack: 1, protocol.Joined: 1,
			protocol.ErrorEvent: 1, protocol.Left: 1, protocol.Ignored: 1, protocol.Unclassified: 1}),
			"the error with code 99 is refused, not counted")

		By("a message of the generated type (other descriptors) falls back to CEL")
		typed := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: &chatv1.Message{Room: "r", Seq: 3, Sender: "s"}}}
		got := classifyBoth(m, typed)
		Expect(got).To(HaveLen(1))
		Expect(got[0].Seq).To(BeEquivalentTo(3))
		Expect(got[0].Sender).To(Equal("s"))
	})

	It("gives CEL's results on timestamps, enums, integer rooms and refusals", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		Expect(os.WriteFile(filepath.Join(dir, "acme.proto"), []byte(acmeProto), 0o644)).To(Succeed())
		spec, err := protocol.ParseSpec(filepath.Join(dir, "acme.yaml"), []byte(acmeMapping))
		Expect(err).NotTo(HaveOccurred())
		d, err := protocol.LoadDescriptors(ctx, spec, nil, "")
		Expect(err).NotTo(HaveOccurred())
		m, err := protocol.Compile(spec, d)
		Expect(err).NotTo(HaveOccurred())
		fast, all := protocol.FastPaths(m)
		Expect(fast).To(Equal(all-1), "all but the error rule's when (it compares with ==)")
		for _, js := range []string{
			`{"batch": {"items": [{"channel": 7, "offset": 1, "user": "u", "at": "2024-01-02T03:04:05.000000006Z"}, {"channel": -3}]}}`,
			`{"message": {"channel": 3, "offset": "9", "at": "1969-12-31T23:59:59Z"}}`,
			`{"ack": {"id": "x", "offset": "-4"}}`,
			`{"error": {"code": "CODE_BUSY", "reason": "r"}}`,
			`{"error": {"code": 42}}`,
			`{"error": {"grpc_code": "UNAVAILABLE"}}`,
		} {
			msg := dynamicpb.NewMessage(m.Method().Output())
			Expect(protojson.Unmarshal([]byte(js), msg)).To(Succeed())
			classifyBoth(m, msg)
		}
	}, SpecTimeout(20*time.Second))
})

var _ = Describe("A compiled mapping", func() {
	It("is used by many clients at once", func(ctx SpecContext) {
		d, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		m := compileFile("chat.yaml", d)
		msg := dynamicpb.NewMessage(m.Method().Output())
		Expect(protojson.Unmarshal([]byte(`{"batch": {"messages": [{"room": "r", "seq": 1}, {"room": "r", "seq": 2}]}}`), msg)).To(Succeed())
		typed := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{Seq: 4}}}
		errs := make(chan error, 8)
		for g := range 8 {
			go func() {
				defer GinkgoRecover()
				var got []protocol.Incoming
				var err error
				for i := range 200 {
					if got, err = m.Classify(got, msg); err == nil && len(got) != 2 {
						err = fmt.Errorf("got %d items", len(got))
					}
					if err == nil {
						got, err = m.Classify(got, typed) // the CEL path
					}
					if err == nil {
						_, err = m.Encode(protocol.OutSend, protocol.Values{Room: "r", SenderSeq: uint64(i), Client: fmt.Sprint(g)})
					}
					if err != nil {
						break
					}
				}
				errs <- err
			}()
		}
		for range 8 {
			Eventually(errs).WithContext(ctx).WithTimeout(25 * time.Second).Should(Receive(BeNil()))
		}
	}, SpecTimeout(30*time.Second))
})
