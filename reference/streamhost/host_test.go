package streamhost_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/streamhost"
	"github.com/bidikit/bidikit/reference/wire"
)

// echo is a tiny service on a Host: each client string is answered with
// "echo:" + it; "fatal" ends the stream with INVALID_ARGUMENT after an
// answer; "commit" starts a commit that the test answers (release); "flood"
// queues more than the queue holds. Drain queues "bye".
type echo struct {
	host     *streamhost.Host[string]
	release  chan struct{} // each receive lets one pending commit answer
	closed   atomic.Int64  // Handler.Close calls
	commits  sync.WaitGroup
	received atomic.Int64
}

type echoStream struct {
	e  *echo
	st *streamhost.Stream[string]
	ss grpc.ServerStream
}

func (h *echoStream) Receive(f *wire.Frame) error {
	var m wrapperspb.StringValue
	if err := wire.Decode(f, &m); err != nil {
		return err
	}
	h.e.received.Add(1)
	switch v := m.GetValue(); v {
	case "fatal":
		h.st.Push("echo:fatal", 10)
		return status.Error(codes.InvalidArgument, "fatal on purpose")
	case "commit":
		h.st.CommitStarted()
		h.e.commits.Go(func() {
			<-h.e.release
			h.st.Push("ack", 3)
			h.st.CommitDone()
		})
	case "flood":
		for i := range 100 {
			h.st.Push(fmt.Sprint("f", i), 10)
		}
	default:
		h.st.Push("echo:"+v, len(v)+5)
	}
	return nil
}

func (h *echoStream) Write(_ context.Context, batch []string) error {
	for _, s := range batch {
		if err := h.ss.SendMsg(wrapperspb.String(s)); err != nil {
			return err
		}
	}
	return nil
}

func (h *echoStream) Overflowed() error {
	return status.Error(codes.ResourceExhausted, "slow consumer: echo queue full")
}
func (h *echoStream) Drain() { h.st.Push("bye", 3) }
func (h *echoStream) Close() { h.e.closed.Add(1) }

var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName: "Chat", ServerStreams: true, ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			e := srv.(*echo)
			return e.host.Serve(ss, func(st *streamhost.Stream[string]) (streamhost.Handler[string], error) {
				return &echoStream{e: e, st: st, ss: ss}, nil
			})
		},
	}},
}

func startEcho(queue int) (*echo, *grpc.ClientConn) {
	e := &echo{release: make(chan struct{}),
		host: streamhost.New[string](streamhost.Config{Service: "echo", QueueItems: queue, QueueBytes: 1 << 20})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	g := grpc.NewServer(grpc.StreamInterceptor(auth.StreamInterceptor(auth.DevMode{})))
	g.RegisterService(&echoDesc, e)
	go func() { _ = g.Serve(lis) }()
	DeferCleanup(func() {
		close(e.release)
		e.commits.Wait()
		g.Stop()
		Expect(e.host.Close()).To(Succeed())
	})
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cc.Close)
	return e, cc
}

type client struct{ grpc.ClientStream }

func open(ctx context.Context, cc *grpc.ClientConn, user string) client {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+user)
	cs, err := cc.NewStream(ctx, &echoDesc.Streams[0], "/test.Echo/Chat")
	Expect(err).NotTo(HaveOccurred())
	return client{cs}
}

func (c client) say(s string) { Expect(c.SendMsg(wrapperspb.String(s))).To(Succeed()) }

// readAll reads to the stream's end and returns what came and the status.
func (c client) readAll() ([]string, error) {
	var got []string
	for {
		var m wrapperspb.StringValue
		if err := c.RecvMsg(&m); err != nil {
			return got, err
		}
		got = append(got, m.GetValue())
	}
}

func (c client) next() string {
	var m wrapperspb.StringValue
	Expect(c.RecvMsg(&m)).To(Succeed())
	return m.GetValue()
}

var _ = Describe("Host", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("answers, and ends with OK on a client half-close after the commits in flight", func(ctx SpecContext) {
		e, cc := startEcho(16)
		c := open(ctx, cc, "alice")
		c.say("hi")
		Expect(c.next()).To(Equal("echo:hi"))
		c.say("commit")
		Expect(c.CloseSend()).To(Succeed())
		Eventually(e.received.Load).Should(BeEquivalentTo(2))
		e.release <- struct{}{}
		got, err := c.readAll()
		Expect(err).To(MatchError(ContainSubstring("EOF")))
		Expect(got).To(Equal([]string{"ack"}))
		Eventually(e.closed.Load).Should(BeEquivalentTo(1))
	}, SpecTimeout(20*time.Second))

	It("ends the stream with a fatal error's status after what was queued", func(ctx SpecContext) {
		e, cc := startEcho(16)
		c := open(ctx, cc, "alice")
		c.say("fatal")
		got, err := c.readAll()
		Expect(got).To(Equal([]string{"echo:fatal"}))
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument))
		Expect(err.Error()).To(ContainSubstring("fatal on purpose"))
		Eventually(e.closed.Load).Should(BeEquivalentTo(1))
	}, SpecTimeout(20*time.Second))

	It("answers undecodable bytes with INVALID_ARGUMENT", func(ctx SpecContext) {
		_, cc := startEcho(16)
		c := open(ctx, cc, "alice")
		Expect(c.SendMsg(wrapperspb.Bytes([]byte{0xff, 0xff, 0xff}))).To(Succeed()) // not a StringValue: bad UTF-8
		_, err := c.readAll()
		Expect(status.Code(err)).To(Equal(codes.InvalidArgument), "%v", err)
	}, SpecTimeout(20*time.Second))

	It("cuts a stream whose queue overflows with the Handler's status, counting it once", func(ctx SpecContext) {
		_, cc := startEcho(16)
		c := open(ctx, cc, "alice")
		c.say("flood")
		got, err := c.readAll()
		Expect(status.Code(err)).To(Equal(codes.ResourceExhausted))
		Expect(err.Error()).To(ContainSubstring("slow consumer"))
		// The writer may take batches while the flood is pushed, so more than
		// the queue's 16 can arrive; the cut is what must happen.
		Expect(len(got)).To(BeNumerically("<", 100), "every pushed event was written: the stream was not cut")
	}, SpecTimeout(20*time.Second))

	It("drains: idle and busy streams get their last events and UNAVAILABLE after their commits; new streams are refused", func(ctx SpecContext) {
		e, cc := startEcho(16)
		idle := open(ctx, cc, "idle")
		idle.say("x")
		Expect(idle.next()).To(Equal("echo:x"))
		busy := open(ctx, cc, "busy")
		busy.say("commit")
		Eventually(e.received.Load).Should(BeEquivalentTo(2))

		drained := make(chan error, 1)
		go func() { drained <- e.host.Drain(ctx) }()
		Consistently(drained).WithTimeout(200*time.Millisecond).ShouldNot(Receive(), "the busy stream waits for its commit")
		e.release <- struct{}{}
		Eventually(drained).Should(Receive(BeNil()))

		got, err := idle.readAll()
		Expect(got).To(Equal([]string{"bye"}))
		Expect(err).To(MatchError(streamhost.ErrShuttingDown))
		got, err = busy.readAll()
		Expect(got).To(Equal([]string{"ack", "bye"}))
		Expect(err).To(MatchError(streamhost.ErrShuttingDown))

		late := open(ctx, cc, "late")
		_, err = late.readAll()
		Expect(err).To(MatchError(streamhost.ErrShuttingDown))
		Eventually(e.closed.Load).Should(BeEquivalentTo(2), "the refused stream had no Handler")
	}, SpecTimeout(20*time.Second))

	It("forces the streams still open when the drain's context ends", func(ctx SpecContext) {
		e, cc := startEcho(16)
		busy := open(ctx, cc, "busy")
		busy.say("commit")
		Eventually(e.received.Load).Should(BeEquivalentTo(1))
		dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		// the commit never answers: the stream waits (a second at most)
		// and is forced at the drain's end
		err := e.host.Drain(dctx)
		Expect(errors.Is(err, context.DeadlineExceeded)).To(BeTrue(), "%v", err)
		Expect(err.Error()).To(ContainSubstring("echo drain: 1 streams still open"))
		_, err = busy.readAll()
		Expect(status.Code(err)).To(Equal(codes.Unavailable), "%v", err)
		Expect(strings.Contains(err.Error(), "server shutting down")).To(BeTrue())
	}, SpecTimeout(20*time.Second))

	It("refuses a stream without an authenticated user", func(ctx SpecContext) {
		e := &echo{host: streamhost.New[string](streamhost.Config{Service: "echo", QueueItems: 4, QueueBytes: 1024})}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		g := grpc.NewServer() // no auth interceptor
		g.RegisterService(&echoDesc, e)
		go func() { _ = g.Serve(lis) }()
		DeferCleanup(g.Stop)
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cc.Close)
		_, err = open(ctx, cc, "x").readAll()
		Expect(status.Code(err)).To(Equal(codes.Unauthenticated))
	}, SpecTimeout(20*time.Second))
})
