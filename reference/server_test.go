package reference_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	channelzgrpc "google.golang.org/grpc/channelz/grpc_channelz_v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/validate"
)

var chatName = chatv1.ChatService_ServiceDesc.ServiceName

// start runs a server on loopback ports with opts (DevMode auth unless set)
// and returns it with a stop function that shuts it down and waits.
func start(opts reference.Options, svc *fakeChat) (*reference.Server, func() error) {
	opts.Addr, opts.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	if opts.Authenticator == nil {
		opts.Authenticator = auth.DevMode{}
	}
	opts.Logger = slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := reference.New(opts, svc)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	Expect(srv.Start(ctx)).To(Succeed())
	var once sync.Once
	var werr error
	stop := func() error {
		once.Do(func() { cancel(); werr = srv.Wait() })
		return werr
	}
	DeferCleanup(stop)
	return srv, stop
}

func dial(addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return conn
}

func withToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

type chatStream = grpc.BidiStreamingClient[chatv1.ClientEvent, chatv1.ServerEvent]

// connect opens a chat stream, joins room and returns the stream and Joined.
func connect(ctx context.Context, conn *grpc.ClientConn, token, room string) (chatStream, *chatv1.Joined, error) {
	st, err := chatv1.NewChatServiceClient(conn).Connect(withToken(ctx, token))
	if err != nil {
		return nil, nil, err
	}
	if err := st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room}}}); err != nil && err != io.EOF {
		return st, nil, err
	}
	ev, err := st.Recv()
	if err != nil {
		return st, nil, err
	}
	return st, ev.GetJoined(), nil
}

var httpClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}

func get(url string) (int, string) {
	resp, err := httpClient.Get(url)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return resp.StatusCode, string(body)
}

func scrape(srv *reference.Server) string {
	code, body := get("http://" + srv.AdminAddr() + "/metrics")
	Expect(code).To(Equal(http.StatusOK))
	return body
}

var _ = Describe("Server", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(15 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	DescribeTable("New rejects invalid options",
		func(opts reference.Options, svcs []*fakeChat, want string) {
			var err error
			switch len(svcs) {
			case 0:
				_, err = reference.New(opts)
			case 1:
				_, err = reference.New(opts, svcs[0])
			default:
				_, err = reference.New(opts, svcs[0], svcs[1])
			}
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("no authenticator", reference.Options{}, nil, "Authenticator is required"),
		Entry("a service hosted twice", reference.Options{Authenticator: auth.DevMode{}},
			[]*fakeChat{newFakeChat(), newFakeChat()}, "hosted twice"),
		Entry("metrics without their registry", reference.Options{Authenticator: auth.DevMode{}, Metrics: metrics.Discard()},
			nil, "Options.Registry is not"),
		Entry("negative grace", reference.Options{Authenticator: auth.DevMode{}, GracePeriod: -time.Second},
			nil, "GracePeriod"),
	)

	It("shares the metric set given to services and registers it once", func() {
		reg, set := reference.NewRegistry()
		srv, err := reference.New(reference.Options{Authenticator: auth.DevMode{}, Registry: reg, Metrics: set})
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Metrics()).To(BeIdenticalTo(set))
		Expect(srv.Registry()).To(BeIdenticalTo(reg))
		_, err = reference.New(reference.Options{Authenticator: auth.DevMode{}, Registry: reg, Metrics: set})
		Expect(err).To(MatchError(ContainSubstring("one Registry per Server")))
	})

	It("serves /healthz, /metrics and pprof on the admin address", func(ctx SpecContext) {
		srv, _ := start(reference.Options{}, newFakeChat())
		Expect(srv.AdminAddr()).NotTo(BeEmpty())
		code, body := get("http://" + srv.AdminAddr() + "/healthz")
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(Equal("ok\n"))

		// One call so that handled counters carry a code.
		_, _, err := connect(ctx, dial(srv.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		m := scrape(srv)
		Expect(m).To(ContainSubstring(`grpc_server_started_total{grpc_method="Connect",grpc_service="bidikit.chat.v1.ChatService",grpc_type="bidi_stream"} 1`))
		Expect(m).To(ContainSubstring("grpc_server_handling_seconds_bucket"))
		Expect(m).To(ContainSubstring("grpc_server_msg_received_total"))
		Expect(m).To(ContainSubstring("bidikit_goroutines "))
		Expect(m).To(ContainSubstring("bidikit_shutting_down 0"))
		Expect(m).To(ContainSubstring("bidikit_connections_open 1"))
		Expect(m).To(ContainSubstring("go_goroutines "))
		Expect(m).To(ContainSubstring("process_open_fds "))

		code, body = get("http://" + srv.AdminAddr() + "/debug/pprof/")
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(ContainSubstring("goroutine"))
		code, body = get("http://" + srv.AdminAddr() + "/debug/pprof/goroutine?debug=1")
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(ContainSubstring("goroutine profile"))
		code, _ = get("http://" + srv.AdminAddr() + "/debug/pprof/cmdline")
		Expect(code).To(Equal(http.StatusOK))
	}, SpecTimeout(30*time.Second))

	It("can run without the admin server", func(ctx SpecContext) {
		srv, err := reference.New(reference.Options{Addr: "127.0.0.1:0", DisableAdmin: true, Authenticator: auth.DevMode{},
			Logger: slog.New(slog.NewTextHandler(GinkgoWriter, nil))})
		Expect(err).NotTo(HaveOccurred())
		sctx, cancel := context.WithCancel(ctx)
		Expect(srv.Start(sctx)).To(Succeed())
		Expect(srv.AdminAddr()).To(BeEmpty())
		Expect(srv.Start(sctx)).To(MatchError(ContainSubstring("twice")))
		cancel()
		Expect(srv.Wait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("names the field whose address does not listen (a library names no flags)", func(ctx SpecContext) {
		taken, _ := start(reference.Options{}, newFakeChat())
		for _, c := range []struct{ addr, admin, field string }{
			{taken.Addr(), "127.0.0.1:0", "Options.Addr"},
			{"127.0.0.1:0", taken.AdminAddr(), "Options.AdminAddr"},
		} {
			srv, err := reference.New(reference.Options{Addr: c.addr, AdminAddr: c.admin, Authenticator: auth.DevMode{},
				Logger: slog.New(slog.NewTextHandler(GinkgoWriter, nil))})
			Expect(err).NotTo(HaveOccurred())
			err = srv.Start(ctx)
			var se *validate.SettingError
			Expect(errors.As(err, &se)).To(BeTrue(), "%v", err)
			Expect(se.Field).To(Equal(c.field))
			Expect(err.Error()).NotTo(ContainSubstring("--"))
			Expect(srv.Wait()).To(HaveOccurred())
		}
	}, SpecTimeout(30*time.Second))

	DescribeTable("authenticates every chat stream",
		func(ctx SpecContext, md []string, wantCode codes.Code, wantMsg string) {
			srv, _ := start(reference.Options{Authenticator: auth.Tokens{"t-alice": "alice"}}, newFakeChat())
			conn := dial(srv.Addr())
			st, err := chatv1.NewChatServiceClient(conn).Connect(metadata.AppendToOutgoingContext(ctx, md...))
			Expect(err).NotTo(HaveOccurred())
			Expect(st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: "lobby"}}})).To(Or(Succeed(), MatchError(io.EOF)))
			ev, err := st.Recv()
			if wantCode == codes.OK {
				Expect(err).NotTo(HaveOccurred())
				Expect(ev.GetJoined().GetMembers()).To(ConsistOf("alice"))
				return
			}
			Expect(status.Code(err)).To(Equal(wantCode))
			Expect(status.Convert(err).Message()).To(ContainSubstring(wantMsg))
			Expect(scrape(srv)).To(ContainSubstring(`grpc_code="Unauthenticated",grpc_method="Connect",grpc_service="bidikit.chat.v1.ChatService",grpc_type="bidi_stream"} 1`))
		},
		Entry("no token", []string{"x-other", "1"}, codes.Unauthenticated, "missing", SpecTimeout(30*time.Second)),
		Entry("not a bearer token", []string{"authorization", "Basic dDp0"}, codes.Unauthenticated, "Bearer", SpecTimeout(30*time.Second)),
		Entry("unknown token", []string{"authorization", "Bearer t-mallory"}, codes.Unauthenticated, "unknown bearer token", SpecTimeout(30*time.Second)),
		Entry("known token", []string{"authorization", "Bearer t-alice"}, codes.OK, "", SpecTimeout(30*time.Second)),
	)

	It("exposes health, reflection and channelz without a token", func(ctx SpecContext) {
		srv, _ := start(reference.Options{Authenticator: auth.Tokens{"t": "u"}}, newFakeChat())
		conn := dial(srv.Addr())
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: chatName})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))

		servers, err := channelzgrpc.NewChannelzClient(conn).GetServers(ctx, &channelzgrpc.GetServersRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(servers.GetServer()).NotTo(BeEmpty())

		rst, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(rst.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})).To(Succeed())
		r, err := rst.Recv()
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, s := range r.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		Expect(names).To(ContainElements(chatName, "grpc.health.v1.Health"))
		Expect(rst.CloseSend()).To(Succeed())
		_, err = rst.Recv()
		Expect(err).To(MatchError(io.EOF))
	}, SpecTimeout(30*time.Second))

	It("answers a handler panic with INTERNAL, counts it and keeps serving", func(ctx SpecContext) {
		srv, _ := start(reference.Options{}, newFakeChat())
		conn := dial(srv.Addr())
		_, _, err := connect(ctx, conn, "alice", "panic")
		Expect(status.Code(err)).To(Equal(codes.Internal))
		Expect(status.Convert(err).Message()).To(Equal("internal server error"))
		Expect(scrape(srv)).To(ContainSubstring("bidikit_panics_total 1"))
		_, joined, err := connect(ctx, conn, "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		Expect(joined.GetRoom()).To(Equal("lobby"))
	}, SpecTimeout(30*time.Second))

	It("ends a call whose message is over MaxRecvMsgSize with RESOURCE_EXHAUSTED", func(ctx SpecContext) {
		srv, _ := start(reference.Options{MaxRecvMsgSize: 1024}, newFakeChat())
		st, _, err := connect(ctx, dial(srv.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		big := &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
			Room: "lobby", ClientMsgId: "m1", SenderSeq: 1, Body: strings.Repeat("x", 2048)}}}
		Expect(st.Send(big)).To(Or(Succeed(), MatchError(io.EOF)))
		_, err = st.Recv()
		Expect(status.Code(err)).To(Equal(codes.ResourceExhausted))
	}, SpecTimeout(30*time.Second))

	It("refuses metadata over MaxHeaderListSize with INTERNAL", func(ctx SpecContext) {
		srv, _ := start(reference.Options{}, newFakeChat())
		conn := dial(srv.Addr())
		// Make sure the connection is up, so the client knows the server's limit.
		_, _, err := connect(ctx, conn, "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		big := metadata.AppendToOutgoingContext(ctx, "x-big", strings.Repeat("y", reference.DefaultMaxHeaderListSize+1024))
		_, _, err = connect(big, conn, "alice", "lobby")
		Expect(status.Code(err)).To(Equal(codes.Internal))
		Expect(err.Error()).To(ContainSubstring("header list size"))
	}, SpecTimeout(30*time.Second))

	It("closes connections over MaxConnections at once and counts them", func(ctx SpecContext) {
		srv, _ := start(reference.Options{MaxConnections: 1}, newFakeChat())
		_, _, err := connect(ctx, dial(srv.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		_, _, err = connect(ctx, dial(srv.Addr()), "bob", "lobby")
		Expect(status.Code(err)).To(Equal(codes.Unavailable))
		Expect(scrape(srv)).To(MatchRegexp(`bidikit_connections_refused_total [1-9]`))
	}, SpecTimeout(30*time.Second))

	It("reports SERVING, then NOT_SERVING and 503 while draining, then ends watchers", func(ctx SpecContext) {
		svc := newFakeChat()
		svc.holdDrain = make(chan struct{})
		srv, stop := start(reference.Options{}, svc)
		conn := dial(srv.Addr())
		watch, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: chatName})
		Expect(err).NotTo(HaveOccurred())
		r, err := watch.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(r.GetStatus()).To(Equal(healthpb.HealthCheckResponse_SERVING))

		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()

		r, err = watch.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(r.GetStatus()).To(Equal(healthpb.HealthCheckResponse_NOT_SERVING))
		_, err = watch.Recv()
		Expect(status.Code(err)).To(Equal(codes.Unavailable))

		code, body := get("http://" + srv.AdminAddr() + "/healthz")
		Expect(code).To(Equal(http.StatusServiceUnavailable))
		Expect(body).To(Equal("shutting down\n"))
		Expect(scrape(srv)).To(ContainSubstring("bidikit_shutting_down 1"))
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		Expect(err).NotTo(HaveOccurred())
		Expect(resp.GetStatus()).To(Equal(healthpb.HealthCheckResponse_NOT_SERVING))

		close(svc.holdDrain)
		Eventually(stopped).WithContext(ctx).Should(Receive(BeNil()))
		Expect(svc.closed.Load()).To(BeEquivalentTo(1))
	}, SpecTimeout(30*time.Second))

	It("ends an open stream with UNAVAILABLE on graceful shutdown", func(ctx SpecContext) {
		svc := newFakeChat()
		srv, stop := start(reference.Options{GracePeriod: 20 * time.Second}, svc)
		st, _, err := connect(ctx, dial(srv.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		_, err = st.Recv()
		Expect(status.Code(err)).To(Equal(codes.Unavailable))
		Expect(status.Convert(err).Message()).To(Equal("server shutting down"))
		Eventually(stopped).WithContext(ctx).Should(Receive(BeNil()))
		Expect(svc.closed.Load()).To(BeEquivalentTo(1))
	}, SpecTimeout(30*time.Second))

	It("stops hard when a service does not drain within the grace period", func(ctx SpecContext) {
		svc := newFakeChat()
		svc.holdDrain = make(chan struct{}) // never closed: Drain waits out the grace
		srv, stop := start(reference.Options{GracePeriod: time.Second}, svc)
		st, _, err := connect(ctx, dial(srv.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		stopped := make(chan error, 1)
		go func() { stopped <- stop() }()
		_, err = st.Recv()
		Expect(status.Code(err)).To(Equal(codes.Unavailable))
		Eventually(stopped).WithContext(ctx).Should(Receive(BeNil()))
		Expect(svc.closed.Load()).To(BeEquivalentTo(1))
	}, SpecTimeout(30*time.Second))

	It("cleans up after a client that vanishes without FIN (keepalive)", func(ctx SpecContext) {
		svc := newFakeChat()
		srv, _ := start(reference.Options{}, svc) // default keepalive: 5s + 5s
		proxy := newFreezeProxy(srv.Addr())
		DeferCleanup(proxy.Close)
		_, _, err := connect(ctx, dial(proxy.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		Expect(svc.active.Load()).To(BeEquivalentTo(1))
		Expect(scrape(srv)).To(ContainSubstring("bidikit_connections_open 1"))

		proxy.Freeze() // the client goes silent: no bytes either way, no FIN
		Eventually(svc.active.Load).WithContext(ctx).WithTimeout(40 * time.Second).WithPolling(250 * time.Millisecond).
			Should(BeZero())
		Eventually(func() string { return scrape(srv) }).WithContext(ctx).WithTimeout(10 * time.Second).
			Should(ContainSubstring("bidikit_connections_open 0"))
	}, SpecTimeout(60*time.Second))
})

// freezeProxy forwards TCP between clients and target until Freeze; from
// then on it swallows every byte in both directions and keeps the sockets
// open — a peer that vanished without FIN.
type freezeProxy struct {
	l      net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex // guards conns
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newFreezeProxy(target string) *freezeProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	p := &freezeProxy{l: l, target: target}
	p.wg.Go(p.accept)
	return p
}

func (p *freezeProxy) Addr() string { return p.l.Addr().String() }
func (p *freezeProxy) Freeze()      { p.frozen.Store(true) }

func (p *freezeProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(s, c) })
		p.wg.Go(func() { p.pipe(c, s) })
	}
}

// pipe copies src to dst until src fails; frozen bytes are dropped.
func (p *freezeProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			if !p.frozen.Load() {
				_ = dst.Close()
			}
			return
		}
		if !p.frozen.Load() {
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

func (p *freezeProxy) Close() {
	_ = p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
