package engine_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
)

// chatters is a chat scenario of two chatters in one room for d, without
// checks: preflight specs look at whether any client ran.
func chatters(d time.Duration) *scenario.Scenario {
	return &scenario.Scenario{Name: "preflight", File: "preflight.yaml", Service: scenario.Chat, Seed: 4, Duration: d,
		Roles: []scenario.Role{{Name: "chat", Count: 2, Behaviour: "chatter", Scopes: 1, Rate: 5}}}
}

// startTokenReference starts the reference server in-process with only the
// bearer token "good-token" (user alice) accepted; it stops at cleanup.
func startTokenReference() string {
	GinkgoHelper()
	tokens := filepath.Join(GinkgoT().TempDir(), "tokens.txt")
	Expect(os.WriteFile(tokens, []byte("good-token alice\n"), 0o600)).To(Succeed())
	cfg := reference.DefaultConfig()
	cfg.Options.Addr, cfg.Options.AdminAddr = "127.0.0.1:0", ""
	cfg.DevAuth, cfg.TokensFile = false, tokens
	srv, err := reference.Build(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError})))
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	Expect(srv.Start(ctx)).To(Succeed())
	DeferCleanup(func() {
		cancel()
		_ = srv.Wait()
	})
	return srv.Addr()
}

// startFake serves health and, when register is set, whatever it registers,
// with opts, on a loopback port; it stops at cleanup.
func startFake(register func(*grpc.Server), opts ...grpc.ServerOption) string {
	GinkgoHelper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s, health.NewServer())
	if register != nil {
		register(s)
	}
	go func() { _ = s.Serve(lis) }()
	DeferCleanup(s.Stop)
	return lis.Addr().String()
}

// refusingChat is a chat service whose every stream is refused by how.
type refusingChat struct {
	chatv1.UnimplementedChatServiceServer
	how func(grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error
}

func (r refusingChat) Connect(st grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
	return r.how(st)
}

// expectRejected checks that Run stopped in preflight with code, before
// any client ran, and that its one-line error says want.
func expectRejected(res result.Scenario, err error, tap *eventLog, addr string, code codes.Code, want ...string) {
	GinkgoHelper()
	Expect(err).To(MatchError(engine.ErrRejected), describe(res))
	var rej *engine.RejectedError
	Expect(errors.As(err, &rej)).To(BeTrue())
	Expect(rej.Code).To(Equal(code))
	Expect(rej.Target).To(Equal(addr))
	Expect(err.Error()).NotTo(ContainSubstring("\n"))
	for _, w := range want {
		Expect(err.Error()).To(ContainSubstring(w))
	}
	Expect(res.Failure).To(Equal(err.Error()))
	Expect(res.Passed).To(BeFalse())
	Expect(res.Clients).To(BeZero(), "no client ran")
	Expect(res.Messages.Sent).To(BeZero())
	Expect(tap.all()).To(BeEmpty(), "no event: no client connected, joined or sent")
}

var _ = Describe("preflight's service probe", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	// The scenario lasts 30 s and each spec has 15 s: only a run that stops
	// in preflight finishes in time.
	Context("against the reference server with bearer tokens required", func() {
		It("stops a run with a wrong token, naming UNAUTHENTICATED and --token", func(ctx SpecContext) {
			addr := startTokenReference()
			var tap eventLog
			res, err := engine.Run(ctx, chatters(30*time.Second), engine.WithTarget(addr), engine.WithToken("wrong-token"), engine.WithTap(&tap))
			expectRejected(res, err, &tap, addr, codes.Unauthenticated,
				"UNAUTHENTICATED", "--token", "bidikit.chat.v1.ChatService/Connect", addr, "unknown bearer token")
		}, SpecTimeout(15*time.Second))

		It("stops a run without a token, saying the user id was presented", func(ctx SpecContext) {
			addr := startTokenReference()
			var tap eventLog
			res, err := engine.Run(ctx, chatters(30*time.Second), engine.WithTarget(addr), engine.WithTap(&tap))
			expectRejected(res, err, &tap, addr, codes.Unauthenticated, "UNAUTHENTICATED", `no --token was given`, `"chat-0"`)
		}, SpecTimeout(15*time.Second))

		It("lets a run with the right token through", func(ctx SpecContext) {
			addr := startTokenReference()
			res, err := engine.Run(ctx, chatters(time.Second), engine.WithTarget(addr), engine.WithToken("good-token"))
			Expect(err).NotTo(HaveOccurred(), describe(res))
			Expect(res.Clients).To(Equal(2))
			Expect(res.Messages.Acked).To(BeNumerically(">", 0), describe(res))
		}, SpecTimeout(15*time.Second))
	})

	DescribeTable("stops the run when the target refuses the service",
		func(ctx SpecContext, register func(*grpc.Server), opts []grpc.ServerOption, code codes.Code, want []string) {
			addr := startFake(register, opts...)
			var tap eventLog
			res, err := engine.Run(ctx, chatters(30*time.Second), engine.WithTarget(addr), engine.WithTap(&tap))
			expectRejected(res, err, &tap, addr, code, want...)
		},
		Entry("a server without the service: UNIMPLEMENTED naming it", nil, nil, codes.Unimplemented,
			[]string{"UNIMPLEMENTED", "the server does not serve bidikit.chat.v1.ChatService"}, SpecTimeout(15*time.Second)),
		Entry("an interceptor refusing the user: PERMISSION_DENIED", registerRecorder,
			[]grpc.ServerOption{grpc.StreamInterceptor(func(any, grpc.ServerStream, *grpc.StreamServerInfo, grpc.StreamHandler) error {
				return status.Error(codes.PermissionDenied, "not for you")
			})}, codes.PermissionDenied,
			[]string{"PERMISSION_DENIED", "not for you", "--token whose user may"}, SpecTimeout(15*time.Second)),
		Entry("a handler that refuses a moment after the stream opened, without reading", registerRefusing(
			func(st grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
				time.Sleep(5 * time.Millisecond) // an auth lookup elsewhere
				return status.Error(codes.Unauthenticated, "token expired")
			}), nil, codes.Unauthenticated, []string{"UNAUTHENTICATED", "token expired", "--token"}, SpecTimeout(15*time.Second)),
		Entry("a handler that checks the token only when it reads", registerRefusing(
			func(st grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
				_, _ = st.Recv()
				return status.Error(codes.Unauthenticated, "who are you")
			}), nil, codes.Unauthenticated, []string{"UNAUTHENTICATED", "who are you"}, SpecTimeout(15*time.Second)),
	)

	It("passes a server that stays silent on the probe stream, and the clients run", func(ctx SpecContext) {
		rec, addr, stop := startRecorder(false)
		DeferCleanup(stop)
		rec.silentProbe = true
		res, err := engine.Run(ctx, chatters(time.Second), engine.WithTarget(addr))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(rec.Streams()).To(Equal(2))
		Expect(rec.Sends()).To(BeNumerically(">", 0))
		Expect(rec.Probes()).To(Equal(1), "one probe stream")
	}, SpecTimeout(15*time.Second))

	It("probes every target that answered, and names the one that refuses", func(ctx SpecContext) {
		_, good, stop := startRecorder(false)
		DeferCleanup(stop)
		bad := startFake(nil)
		var tap eventLog
		res, err := engine.Run(ctx, chatters(30*time.Second), engine.WithTargets(good, bad), engine.WithTap(&tap))
		expectRejected(res, err, &tap, bad, codes.Unimplemented, bad)
		Expect(err.Error()).NotTo(ContainSubstring(good))
	}, SpecTimeout(15*time.Second))
})

// registerRecorder registers a non-pushing recorder's chat service.
func registerRecorder(s *grpc.Server) {
	chatv1.RegisterChatServiceServer(s, &recorder{lastPushAt: map[int]time.Time{}})
}

// registerRefusing registers a chat service whose streams how refuses.
func registerRefusing(how func(grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error) func(*grpc.Server) {
	return func(s *grpc.Server) { chatv1.RegisterChatServiceServer(s, refusingChat{how: how}) }
}
