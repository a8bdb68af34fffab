package engine_test

import (
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// startGarbler serves chat's Connect answering the first client message
// (a Join) with a Joined and the room's seq 1, then with bytes that are no
// protobuf message (a field of wire type 7, which does not exist).
func startGarbler() string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := grpc.NewServer(grpc.ForceServerCodec(chattest.RawCodec{}), grpc.UnknownServiceHandler(func(_ any, st grpc.ServerStream) error {
		var in []byte
		if m, _ := grpc.MethodFromServerStream(st); m != "/"+chatv1.ChatService_ServiceDesc.ServiceName+"/Connect" {
			return status.Error(codes.Unimplemented, m) // health: unimplemented counts as serving
		}
		if md, _ := metadata.FromIncomingContext(st.Context()); len(md.Get(engine.PreflightHeader)) > 0 {
			for st.RecvMsg(&in) == nil { // the engine's preflight probe: left alone
			}
			return nil
		}
		if err := st.RecvMsg(&in); err != nil {
			return nil
		}
		var join chatv1.ClientEvent
		if err := proto.Unmarshal(in, &join); err != nil {
			return err
		}
		room := join.GetJoin().GetRoom()
		for _, ev := range []*chatv1.ServerEvent{
			{Event: &chatv1.ServerEvent_Joined{Joined: &chatv1.Joined{Room: room, HeadSeq: 0}}},
			{Event: &chatv1.ServerEvent_Message{Message: &chatv1.Message{Room: room, Seq: 1, Sender: "someone", ClientMsgId: "m1", SenderSeq: 1}}},
		} {
			b, err := proto.Marshal(ev)
			if err != nil {
				return err
			}
			if err := st.SendMsg(&b); err != nil {
				return nil
			}
		}
		garbage := []byte{0x0f, 0xff, 0xff}
		_ = st.SendMsg(&garbage)
		for st.RecvMsg(&in) == nil {
		}
		return nil
	}))
	go func() { _ = s.Serve(lis) }()
	DeferCleanup(s.Stop)
	return lis.Addr().String()
}

var _ = Describe("a server message that does not decode", func() {
	It("is an unread message and the client's own end, not an INTERNAL status the server sent", func(ctx SpecContext) {
		s, err := scenario.Parse("garbled.yaml", []byte(`
name: garbled
service: chat
seed: 1
duration: 1s
roles:
  - {name: chatter, count: 2, behaviour: chatter, rooms: 1, rate: 5/s}
checks:
  - status-codes
  - no-gaps
`))
		Expect(err).NotTo(HaveOccurred())
		log := &orderTap{}
		res, err := engine.Run(ctx, s, engine.WithTarget(startGarbler()), engine.WithTap(log))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(res.Passed).To(BeFalse(), describe(res))

		unread, ends := 0, 0
		for i := range 2 {
			for _, e := range log.client(i) {
				switch {
				case e.Kind == event.Unread:
					unread++
					Expect(e.Field).To(Equal(event.UnreadUndecodable))
					Expect(e.Detail).To(HavePrefix("a server message did not decode with the service's descriptors: "))
				case e.Kind == event.Disconnect && e.Field == event.FieldClientEnd:
					ends++
				}
			}
		}
		Expect(unread).To(BeNumerically(">", 0), describe(res))
		Expect(ends).To(BeNumerically(">=", unread), describe(res))
		for _, v := range res.Checks {
			switch v.Name {
			case "status-codes":
				Expect(v.Status).NotTo(Equal(check.Fail), "the server sent no INTERNAL: %s", v.Summary)
				Expect(v.Summary).NotTo(ContainSubstring("INTERNAL"))
			case "no-gaps":
				Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
				Expect(v.Summary).To(ContainSubstring("could not read"))
			}
		}
	}, SpecTimeout(60*time.Second))
})
