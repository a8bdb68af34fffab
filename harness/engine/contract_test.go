package engine_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/scenario"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// echoDesc is a bidi method outside every bidikit service: each ClientEvent
// with a Send is answered with a Message carrying the Send's client seq.
var echoDesc = grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}

const echoMethod = "/test.Echo/Stream"

// serveEcho starts the echo service on loopback and counts what it echoed.
func serveEcho(echoed *atomic.Int64) string {
	GinkgoHelper()
	desc := echoDesc
	desc.Handler = func(_ any, st grpc.ServerStream) error {
		for {
			var in chatv1.ClientEvent
			if err := st.RecvMsg(&in); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return err
			}
			s := in.GetSend()
			if s == nil {
				continue
			}
			echoed.Add(1)
			out := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Message{Message: &chatv1.Message{
				Room: s.Room, Seq: s.SenderSeq, ClientMsgId: s.ClientMsgId, Sender: "echo"}}}
			if err := st.SendMsg(out); err != nil {
				return err
			}
		}
	}
	gs := grpc.NewServer()
	gs.RegisterService(&grpc.ServiceDesc{ServiceName: "test.Echo", HandlerType: (*any)(nil), Streams: []grpc.StreamDesc{desc}}, struct{}{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	go func() { _ = gs.Serve(lis) }()
	DeferCleanup(gs.Stop)
	return lis.Addr().String()
}

// echoDriver is the package documentation's example driver, written
// against the exported contract only: one numbered message per paced
// action, each echo read as a delivery in the client's own scope.
type echoDriver struct {
	c   engine.Client
	seq uint64
	in  chatv1.ServerEvent
}

func (d *echoDriver) Message() proto.Message { return &d.in }

func (d *echoDriver) Start(engine.Stream) error {
	d.c.Emit(&event.Event{Kind: event.Join, Scope: d.c.Scopes()[0]})
	return nil
}

func (d *echoDriver) Act(s engine.Stream, n int) error {
	for range n {
		d.seq++
		d.c.Emit(&event.Event{Kind: event.Send, Scope: d.c.Scopes()[0], SenderSeq: d.seq})
		if err := s.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
			Room: d.c.Scopes()[0], SenderSeq: d.seq, Body: "x"}}}); err != nil {
			return err
		}
	}
	return nil
}

func (d *echoDriver) Handle(m proto.Message) {
	if msg := m.(*chatv1.ServerEvent).GetMessage(); msg != nil {
		d.c.Emit(&event.Event{Kind: event.Deliver, Scope: msg.Room, Seq: msg.Seq, SenderSeq: msg.Seq, Sender: d.c.User()})
	}
}

func (d *echoDriver) Ended() {}

// EchoerParams are the echoer behaviour's (none).
type EchoerParams struct{}

func init() {
	engine.RegisterService(engine.Service{Name: "echo-test", Desc: &echoDesc, Method: echoMethod,
		Attacker: func(c engine.Client, _ int, _ bool) (engine.Driver, error) { return &echoDriver{c: c}, nil }})
	engine.RegisterBehaviour(scenario.Behaviour{Name: "echoer", Service: "echo-test", DefaultRate: 20},
		func() *EchoerParams { return &EchoerParams{} },
		func(c engine.Client, _ *EchoerParams) (engine.Driver, error) { return &echoDriver{c: c}, nil })
}

// checkSpec requests a registered check with its default parameters.
func checkSpec(name string) scenario.CheckSpec {
	return scenario.CheckSpec{Name: name}
}

var _ = Describe("a protocol plugged in from outside the engine (the driver contract)", func() {
	It("runs its behaviour and its attackers over real gRPC, and the judge judges its events", func(ctx SpecContext) {
		var echoed atomic.Int64
		addr := serveEcho(&echoed)
		s := &scenario.Scenario{Name: "echo", File: "echo.yaml", Service: "echo-test", Seed: 5,
			Duration: 1500 * time.Millisecond,
			Roles: []scenario.Role{
				{Name: "echoer", Count: 3, Behaviour: "echoer", Scopes: 3, ScopePrefix: "line"},
				{Name: "flood", Count: 1, Behaviour: "flooder", Rate: 200, Scopes: 1, ScopePrefix: "flood"},
			},
			Checks: []scenario.CheckSpec{checkSpec("delivery-order"), checkSpec("no-duplicates")},
		}
		res, err := engine.Run(context.WithoutCancel(ctx), s, engine.WithTarget(addr))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(res.Messages.Sent).To(BeNumerically(">", 20))
		Expect(res.Messages.Delivered).To(BeNumerically(">", 20))
		Expect(echoed.Load()).To(BeNumerically(">=", res.Messages.Delivered), "deliveries the server never echoed")
		Expect(res).To(matchers.PassCheck("delivery-order", "no-duplicates"), describe(res))
	}, SpecTimeout(30*time.Second))

	It("refuses an unknown service before connecting, naming the registered ones", func(ctx SpecContext) {
		s := &scenario.Scenario{Name: "x", File: "x.yaml", Service: "no-such", Seed: 1, Duration: time.Second,
			Roles: []scenario.Role{{Name: "e", Count: 1, Behaviour: "echoer", Scopes: 1}}}
		_, err := engine.Run(ctx, s, engine.WithTarget("127.0.0.1:1"))
		Expect(err).To(MatchError(And(ContainSubstring(`"no-such"`), ContainSubstring("echo-test"), ContainSubstring("chat"))))
	}, SpecTimeout(10*time.Second))
})
