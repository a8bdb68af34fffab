package reference_test

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference"
)

// serverGoroutines counts the goroutines of the server side of this process:
// those with a frame (or a creator) in the reference server's packages or
// in grpc-go's Server. The test's own clients (package reference_test, grpc
// client streams) are not counted.
func serverGoroutines() int {
	buf := make([]byte, 1<<20)
	for range 8 { // bounded: 256 MiB at the most
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/bidikit/bidikit/reference/") ||
			strings.Contains(g, "github.com/bidikit/bidikit/reference.") ||
			strings.Contains(g, "google.golang.org/grpc.(*Server)") {
			count++
		}
	}
	return count
}

// idleStream opens one stream of a service for user on cc, enters name
// (a room, document or match) and returns once the server answered; what
// the server sends later is read and dropped until ctx ends.
type idleStream func(ctx context.Context, cc *grpc.ClientConn, user, name string) error

// enter sends first on st and reads until entered says the server answered
// it; then the rest is read and dropped on a goroutine until st ends.
func enter[Req, Ev any](st grpc.BidiStreamingClient[Req, Ev], first *Req, entered func(*Ev) bool) error {
	if err := st.Send(first); err != nil {
		return err
	}
	for {
		ev, err := st.Recv()
		if err != nil {
			return err
		}
		if entered(ev) {
			go func() {
				for {
					if _, err := st.Recv(); err != nil {
						return
					}
				}
			}()
			return nil
		}
	}
}

func idleChat(ctx context.Context, cc *grpc.ClientConn, user, room string) error {
	st, err := chatv1.NewChatServiceClient(cc).Connect(chattest.WithUser(ctx, user))
	if err != nil {
		return err
	}
	return enter(st, chattest.JoinEv(room), func(ev *chatv1.ServerEvent) bool { return ev.GetJoined() != nil })
}

func idleCollab(ctx context.Context, cc *grpc.ClientConn, user, doc string) error {
	st, err := collabv1.NewCollabServiceClient(cc).Edit(chattest.WithUser(ctx, user))
	if err != nil {
		return err
	}
	open := &collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: doc, ClientId: user}}}
	return enter(st, open, func(ev *collabv1.ServerEvent) bool { return ev.GetOpened() != nil })
}

func idleGame(ctx context.Context, cc *grpc.ClientConn, user, match string) error {
	st, err := gamev1.NewGameServiceClient(cc).Play(chattest.WithUser(ctx, user))
	if err != nil {
		return err
	}
	join := &gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: match}}}
	return enter(st, join, func(ev *gamev1.ServerEvent) bool { return ev.GetJoined() != nil })
}

var _ = Describe("Goroutines per idle stream", func() {
	BeforeEach(noLeaks)

	// Each stream may cost the server its handler goroutine (the writer)
	// and one receive loop, nothing more: no pump, no watcher, no clean-up
	// goroutine. The chat session before streamhost cost 5, the game
	// session 4.
	const streams = 40
	const perStream = 2

	DescribeTable("the server spends at most a writer and a receive loop on each",
		func(ctx SpecContext, open idleStream) {
			cfg := reference.DefaultConfig()
			cfg.Options.Addr, cfg.Options.AdminAddr = "127.0.0.1:0", ""
			srv, err := reference.Build(cfg, slog.New(slog.DiscardHandler))
			Expect(err).NotTo(HaveOccurred())
			sctx, stop := context.WithCancel(context.Background())
			Expect(srv.Start(sctx)).To(Succeed())
			DeferCleanup(func() { stop(); _ = srv.Wait() })
			cc := dial(srv.Addr())

			// one stream first, so that the connection's transport and
			// what a room, document or match holds are in the baseline
			cctx, cancel := context.WithCancel(ctx)
			DeferCleanup(cancel)
			Expect(open(cctx, cc, "u0", "r")).To(Succeed())
			before := serverGoroutines()
			for i := 1; i <= streams; i++ {
				Expect(open(cctx, cc, fmt.Sprintf("u%d", i), "r")).To(Succeed())
			}
			after := serverGoroutines()
			per := float64(after-before) / streams
			AddReportEntry("server goroutines per idle stream", per)
			fmt.Fprintf(GinkgoWriter, "%d streams: server goroutines %d -> %d, %.2f per stream\n", streams, before, after, per)
			Expect(after-before).To(BeNumerically("<=", perStream*streams+2),
				"%.2f server goroutines per idle stream, want at most %d", per, perStream)
			Expect(after-before).To(BeNumerically(">=", streams), "the count must see the streams' goroutines")
			cancel()
		},
		Entry("chat", SpecTimeout(60*time.Second), idleStream(idleChat)),
		Entry("collab", SpecTimeout(60*time.Second), idleStream(idleCollab)),
		Entry("game", SpecTimeout(60*time.Second), idleStream(idleGame)),
	)
})
