package protocol_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/bidikit/bidikit/harness/protocol"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// compileFile parses testdata/name and compiles it against d.
func compileFile(name string, d *protocol.Descriptors) *protocol.Mapping {
	path := filepath.Join("testdata", name)
	data, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred(), "fixture %s is missing", path)
	spec, err := protocol.ParseSpec(path, data)
	Expect(err).NotTo(HaveOccurred())
	m, err := protocol.Compile(spec, d)
	Expect(err).NotTo(HaveOccurred())
	return m
}

// member is one client of a mapped stream: it sends what the mapping
// encodes and reads classified messages.
type member struct {
	m    *protocol.Mapping
	st   *protocol.Stream
	user string
	got  []protocol.Incoming
}

func openMember(ctx context.Context, conn grpc.ClientConnInterface, m *protocol.Mapping, user string) *member {
	sctx, cancel := context.WithCancel(ctx)
	DeferCleanup(cancel)
	st, err := m.Open(sctx, conn, protocol.Values{Token: user, Client: user})
	Expect(err).NotTo(HaveOccurred())
	return &member{m: m, st: st, user: user}
}

func (c *member) send(kind string, v protocol.Values) {
	msg, err := c.m.Encode(kind, v)
	Expect(err).NotTo(HaveOccurred())
	Expect(c.st.Send(msg)).To(Succeed())
}

// await reads until a message of kind arrives (at most 50 messages, within
// the spec's deadline) and returns the items of that message.
func (c *member) await(kind protocol.Kind) []protocol.Incoming {
	for range 50 {
		msg, err := c.st.Recv()
		Expect(err).NotTo(HaveOccurred())
		c.got, err = c.m.Classify(c.got, msg)
		Expect(err).NotTo(HaveOccurred())
		Expect(c.got).NotTo(BeEmpty())
		Expect(c.got[0].Kind).NotTo(Equal(protocol.Unclassified), "no rule matched %s", protojson.Format(msg))
		if c.got[0].Kind == kind {
			return append([]protocol.Incoming(nil), c.got...)
		}
	}
	Fail("no " + kind.String() + " message in 50")
	return nil
}

// end half-closes and reads until the server ends the stream.
func (c *member) end() {
	Expect(c.st.CloseSend()).To(Succeed())
	for range 1000 {
		if _, err := c.st.Recv(); err != nil {
			Expect(errors.Is(err, io.EOF)).To(BeTrue(), "stream ended with %v", err)
			return
		}
	}
	Fail("the server did not end the stream")
}

var _ = Describe("The chat mapping", func() {
	It("round-trips the reference's chat stream: join, send, ack, delivery, resume with a batch", func(ctx SpecContext) {
		conn, addr := startReference()
		data, err := os.ReadFile(filepath.Join("testdata", "chat.yaml"))
		Expect(err).NotTo(HaveOccurred())
		spec, err := protocol.ParseSpec("chat.yaml", data)
		Expect(err).NotTo(HaveOccurred())
		d, err := protocol.LoadDescriptors(ctx, spec, conn, addr)
		Expect(err).NotTo(HaveOccurred(), "no descriptors block: server reflection")
		Expect(d.Source).To(HavePrefix("server reflection (grpc.reflection.v1)"))
		m, err := protocol.Compile(spec, d)
		Expect(err).NotTo(HaveOccurred())
		room := m.RoomName(3)
		Expect(room).To(Equal("room-3"))

		alice, bob := openMember(ctx, conn, m, "alice"), openMember(ctx, conn, m, "bob")
		for _, c := range []*member{alice, bob} {
			c.send(protocol.OutJoin, protocol.Values{Room: room})
			j := c.await(protocol.Joined)
			Expect(j).To(HaveLen(1))
			Expect(j[0].Room).To(Equal(room))
			Expect(j[0].Has(protocol.FieldHeadSeq)).To(BeTrue())
			Expect(j[0].Has(protocol.FieldSeq)).To(BeFalse(), "joined maps no seq")
		}

		sent := time.Now().UnixNano()
		for i := uint64(1); i <= 3; i++ {
			alice.send(protocol.OutSend, protocol.Values{Room: room, Body: `hi "bob" \o/`, ClientMsgID: "alice-" + string(rune('0'+i)),
				SenderSeq: i, SendTimeUnixNano: sent, Session: "run-1"})
			ack := alice.await(protocol.Ack)
			Expect(ack).To(HaveLen(1))
			Expect(ack[0]).To(MatchFields(ack[0], room, i, "alice-"+string(rune('0'+i))))

			del := bob.await(protocol.Delivery)
			Expect(del).To(HaveLen(1))
			Expect(del[0].Room).To(Equal(room))
			Expect(del[0].Seq).To(Equal(ack[0].Seq))
			Expect(del[0].Sender).To(Equal("alice"))
			Expect(del[0].ClientMsgID).To(Equal(ack[0].ClientMsgID))
			Expect(del[0].SenderSeq).To(Equal(i))
			Expect(del[0].SentAt).To(Equal(sent))
			Expect(del[0].ServerTime).To(BeNumerically(">=", sent))
			Expect(del[0].Body).To(Equal(`hi "bob" \o/`))
			Expect(del[0].Replay).To(BeFalse())
		}

		By("a resume from seq 1 replays seqs 2 and 3")
		carol := openMember(ctx, conn, m, "carol")
		carol.send(protocol.OutResume, protocol.Values{Room: room, ResumeSeq: 1})
		j := carol.await(protocol.Joined)
		Expect(j[0].ReplayFrom).To(BeEquivalentTo(2))
		Expect(j[0].ResumeComplete).To(BeTrue())
		var replayed []uint64
		for len(replayed) < 2 {
			for _, in := range carol.await(protocol.Delivery) {
				Expect(in.Replay).To(BeTrue())
				replayed = append(replayed, in.Seq)
			}
		}
		Expect(replayed).To(Equal([]uint64{2, 3}))

		By("an error event is classified with its code")
		carol.send(protocol.OutSend, protocol.Values{Room: "not-joined", Body: "x", ClientMsgID: "c-1", SenderSeq: 1})
		e := carol.await(protocol.ErrorEvent)
		Expect(e[0].Code.String()).To(Equal("FailedPrecondition"))
		Expect(e[0].ClientMsgID).To(Equal("c-1"))

		By("leave is confirmed")
		alice.send(protocol.OutLeave, protocol.Values{Room: room})
		Expect(alice.await(protocol.Left)[0].Room).To(Equal(room))
		for _, c := range []*member{alice, bob, carol} {
			c.end()
		}
	}, SpecTimeout(30*time.Second))

	It("sends raw bytes for the malformed behaviours: the reference refuses them with INVALID_ARGUMENT", func(ctx SpecContext) {
		conn, _ := startReference()
		d, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		c := openMember(ctx, conn, compileFile("chat.yaml", d), "mallory")
		Expect(c.st.Send(protocol.Raw{0xff, 0xff, 0xff})).To(Succeed())
		_, err = c.st.Recv()
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument), "got %v", err)
	}, SpecTimeout(20*time.Second))

	It("compiles the same from a protoset and from .proto sources, and says what it maps", func(ctx SpecContext) {
		fromSet, err := protocol.LoadProtoset(writeProtoset(chatv1.File_bidikit_chat_v1_chat_proto))
		Expect(err).NotTo(HaveOccurred())
		fromSrc, err := protocol.CompileProtos(ctx, []string{protoDir}, []string{"bidikit/chat/v1/chat.proto"})
		Expect(err).NotTo(HaveOccurred())
		a, b := compileFile("chat.yaml", fromSet), compileFile("chat.yaml", fromSrc)
		Expect(a.Fields()).To(Equal(b.Fields()))
		Expect(a.Fields()).To(ContainElements(
			protocol.Out(protocol.OutSend), protocol.Out("typing"), protocol.In(protocol.Delivery, protocol.FieldSeq),
			protocol.In(protocol.Ack, protocol.FieldDuplicate), protocol.Rule(protocol.Ignored)))
		Expect(protocol.Rule(protocol.Ignored)).To(Equal(protocol.Path("incoming.ignore")))

		need := []protocol.Path{protocol.In(protocol.Delivery, protocol.FieldSeq), protocol.In(protocol.Ack, protocol.FieldSenderSeq), protocol.In(protocol.Joined, protocol.FieldReplayFrom)}
		Expect(a.Missing(need...)).To(Equal([]protocol.Path{"incoming.ack.sender_seq"}))
		Expect(protocol.MissingReason(a.Missing(need...))).To(Equal("protocol.incoming.ack.sender_seq is not mapped"))

		By("the encoded messages are the ones a generated client would send")
		msg, err := a.Encode(protocol.OutSend, protocol.Values{Room: "r", Body: "line\nbreak \u00e9 \"q\"", ClientMsgID: "id", SenderSeq: 7, SendTimeUnixNano: 42, Session: "s"})
		Expect(err).NotTo(HaveOccurred())
		raw, err := protoMarshal(msg)
		Expect(err).NotTo(HaveOccurred())
		var typed chatv1.ClientEvent
		Expect(protoUnmarshal(raw, &typed)).To(Succeed())
		Expect(typed.GetSend().GetBody()).To(Equal("line\nbreak \u00e9 \"q\""))
		Expect(typed.GetSend().GetSenderSeq()).To(BeEquivalentTo(7))
		Expect(typed.GetSend().GetClientSentUnixNanos()).To(BeEquivalentTo(42))
		Expect(typed.GetSend().GetSenderSession()).To(Equal("s"))

		_, err = a.Encode("shout", protocol.Values{})
		Expect(protocol.IsNotMapped(err)).To(BeTrue())
		Expect(err).To(MatchError("protocol.outgoing.extras.shout: not mapped"))

		Expect(a.Metadata(protocol.Values{Token: "T"}).Get("authorization")).To(Equal([]string{"Bearer T"}))
	}, SpecTimeout(20*time.Second))
})

// MatchFields checks an ack's room, seq (positive) and client message id.
func MatchFields(in protocol.Incoming, room string, _ uint64, id string) OmegaMatcher {
	return And(
		WithTransform(func(i protocol.Incoming) string { return i.Room }, Equal(room)),
		WithTransform(func(i protocol.Incoming) uint64 { return i.Seq }, BeNumerically(">", 0)),
		WithTransform(func(i protocol.Incoming) string { return i.ClientMsgID }, Equal(id)),
		WithTransform(func(i protocol.Incoming) bool { return i.Has(protocol.FieldDuplicate) && !i.Duplicate }, BeTrue()),
	)
}
