package reference_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
	"github.com/bidikit/bidikit/reference"
)

// noLeaks is a BeforeEach body: after the spec, the goroutines must return
// to those running before it (within 15 s).
func noLeaks() {
	baseline := gleak.Goroutines()
	DeferCleanup(func() {
		Eventually(gleak.Goroutines).WithTimeout(15 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
	})
}

// parse parses args as `bidikit serve` flags over DefaultConfig and
// returns the config with Finish's verdict on it.
func parse(args ...string) (reference.Config, error) {
	GinkgoHelper()
	cfg := reference.DefaultConfig()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	cfg.RegisterFlags(fs)
	Expect(fs.Parse(args)).To(Succeed())
	return cfg, cfg.Finish(fs)
}

var _ = Describe("Config and Build", func() {
	BeforeEach(noLeaks)

	DescribeTable("settles auth flags",
		func(args []string, wantDev bool, wantErr string) {
			cfg, err := parse(args...)
			if wantErr != "" {
				Expect(err).To(MatchError(ContainSubstring(wantErr)))
				return
			}
			Expect(err).NotTo(HaveOccurred())
			Expect(cfg.DevAuth).To(Equal(wantDev))
		},
		Entry("nothing given: development auth", nil, true, ""),
		Entry("--tokens turns it off", []string{"--tokens", "t.txt"}, false, ""),
		Entry("both", []string{"--tokens", "t.txt", "--dev-auth"}, false, "exclude each other"),
		Entry("neither", []string{"--dev-auth=false"}, false, "no authentication"),
		Entry("keepalive below gRPC's floor", []string{"--keepalive-time", "100ms"}, false, "--keepalive-time"),
	)

	It("reports an unreadable tokens file as a ConfigError naming the flag", func() {
		cfg, err := parse("--tokens", filepath.Join(GinkgoT().TempDir(), "missing.txt"))
		Expect(err).NotTo(HaveOccurred())
		_, err = reference.Build(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		var ce *reference.ConfigError
		Expect(errors.As(err, &ce)).To(BeTrue())
		Expect(err.Error()).To(HavePrefix("--tokens: "))
	})

	It("builds chat on SQLite with --db and closes the file at shutdown", func(ctx SpecContext) {
		db := filepath.Join(GinkgoT().TempDir(), "x.db")
		cfg, err := parse("--db", db, "--addr", "127.0.0.1:0", "--admin-addr", "")
		Expect(err).NotTo(HaveOccurred())
		srv, err := reference.Build(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Storage()).To(Equal("sqlite:" + db))
		sctx, cancel := context.WithCancel(ctx)
		Expect(srv.Start(sctx)).To(Succeed())
		Expect(srv.AdminAddr()).To(BeEmpty())
		cancel()
		Expect(srv.Wait()).To(Succeed())
		_, err = os.Stat(db)
		Expect(err).NotTo(HaveOccurred())
	}, SpecTimeout(30*time.Second))

	It("enforces an --acl file on chat rooms, collab documents and game matches", func(ctx SpecContext) {
		file := filepath.Join(GinkgoT().TempDir(), "acl.yaml")
		Expect(os.WriteFile(file, []byte("rooms:\n  ops: [alice]\ndocuments:\n  plan: [alice]\nmatches:\n  final: [alice]\n"), 0o600)).To(Succeed())
		cfg, err := parse("--addr", "127.0.0.1:0", "--admin-addr", "", "--acl", file)
		Expect(err).NotTo(HaveOccurred())
		srv, err := reference.Build(cfg, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		Expect(err).NotTo(HaveOccurred())
		sctx, cancel := context.WithCancel(ctx)
		Expect(srv.Start(sctx)).To(Succeed())
		DeferCleanup(func() { cancel(); _ = srv.Wait() })
		conn := dial(srv.Addr())

		for _, k := range []struct {
			kind, restricted, field string
			open                    func(ctx context.Context, user string) *entrant
		}{
			{"chat room", "ops", "join.room", func(ctx context.Context, user string) *entrant { return chatEntrant(ctx, conn, user) }},
			{"collab document", "plan", "open.document", func(ctx context.Context, user string) *entrant { return collabEntrant(ctx, conn, user) }},
			{"game match", "final", "join.match", func(ctx context.Context, user string) *entrant { return gameEntrant(ctx, conn, user) }},
		} {
			bob := k.open(ctx, "bob")
			e := bob.enter(k.restricted)
			Expect(e).NotTo(BeNil(), "bob enters %s %q", k.kind, k.restricted)
			Expect(e.code).To(Equal(uint32(codes.PermissionDenied)), "%s: %s", k.kind, e.message)
			Expect(e.field).To(Equal(k.field), k.kind)
			// bob's stream stays open: an unlisted name is his to enter.
			Expect(bob.enter("open")).To(BeNil(), "bob enters unlisted %s %q after a refusal", k.kind, "open")
			alice := k.open(ctx, "alice")
			Expect(alice.enter(k.restricted)).To(BeNil(), "alice enters %s %q", k.kind, k.restricted)
			Expect(bob.finish()).To(Succeed(), k.kind)
			Expect(alice.finish()).To(Succeed(), k.kind)
		}
		cancel()
		Expect(srv.Wait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("StartDefault serves chat in memory on free ports", func(ctx SpecContext) {
		sctx, cancel := context.WithCancel(ctx)
		srv, err := reference.StartDefault(sctx, slog.New(slog.NewTextHandler(GinkgoWriter, nil)))
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { cancel(); _ = srv.Wait() })
		Expect(srv.Storage()).To(Equal("memory"))

		st, joined, err := connect(ctx, dial(srv.Addr()), "alice", "lobby")
		Expect(err).NotTo(HaveOccurred())
		Expect(joined.GetMembers()).To(ConsistOf("alice"))
		Expect(st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
			Room: "lobby", ClientMsgId: "m1", SenderSeq: 1, Body: "hi"}}})).To(Succeed())
		var ack *chatv1.Ack
		for ack == nil {
			ev, err := st.Recv()
			Expect(err).NotTo(HaveOccurred())
			ack = ev.GetAck()
		}
		Expect(ack.GetSeq()).To(BeEquivalentTo(1))
		Expect(scrape(srv)).To(ContainSubstring(`bidikit_committed_total{service="chat"} 1`))

		cancel()
		for {
			_, err := st.Recv()
			if err != nil {
				Expect(status.Code(err)).To(Equal(codes.Unavailable))
				break
			}
		}
		Expect(srv.Wait()).To(Succeed())
	}, SpecTimeout(30*time.Second))
})

// entrant is one stream of some service, entering rooms, documents or
// matches by name. The spec's goroutine owns it.
type entrant struct {
	// send sends the join/open of name.
	send func(name string) error
	// next reads one event: entered for Joined/Opened, refused for an Error
	// event, neither for anything else.
	next func() (entered bool, refused *refusal, err error)
	// closeSend half-closes the stream; recv reads until it ends.
	closeSend func() error
	recv      func() error
}

// refusal is a service's Error event, reduced to what the spec checks.
type refusal struct {
	code           uint32
	field, message string
}

// enter joins or opens name and returns nil when it was entered or the
// Error event that refused it.
func (e *entrant) enter(name string) *refusal {
	GinkgoHelper()
	Expect(e.send(name)).To(Succeed())
	for range 1000 {
		entered, refused, err := e.next()
		Expect(err).NotTo(HaveOccurred())
		if entered {
			return nil
		}
		if refused != nil {
			return refused
		}
	}
	Fail("neither entered nor refused within 1000 events")
	return nil
}

// finish ends the stream the interop way: CloseSend, read to io.EOF.
func (e *entrant) finish() error {
	if err := e.closeSend(); err != nil {
		return err
	}
	for range 100_000 {
		if err := e.recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	return errors.New("stream did not end")
}

// entrantStream is the part of a generated bidi client stream (client
// events C, server events S) an entrant drives.
type entrantStream[C, S any] interface {
	Send(C) error
	Recv() (S, error)
	CloseSend() error
}

// newEntrant makes an entrant of st: enter(name) sends the event that joins
// or opens name; judge tells whether a server event (nil after an error)
// says entered, or refused it.
func newEntrant[C, S any](st entrantStream[C, S], enter func(name string) C, judge func(S) (bool, *refusal)) *entrant {
	return &entrant{
		send: func(name string) error { return st.Send(enter(name)) },
		next: func() (bool, *refusal, error) {
			ev, err := st.Recv()
			entered, refused := judge(ev)
			if refused != nil {
				return false, refused, err
			}
			return entered, nil, err
		},
		closeSend: st.CloseSend,
		recv:      func() error { _, err := st.Recv(); return err },
	}
}

// refusalOf is a service's Error event as a refusal; nil for none.
func refusalOf[E interface {
	comparable
	GetCode() uint32
	GetField() string
	GetMessage() string
}](e E) *refusal {
	var none E
	if e == none {
		return nil
	}
	return &refusal{e.GetCode(), e.GetField(), e.GetMessage()}
}

func chatEntrant(ctx context.Context, conn *grpc.ClientConn, user string) *entrant {
	GinkgoHelper()
	st, err := chatv1.NewChatServiceClient(conn).Connect(withToken(ctx, user))
	Expect(err).NotTo(HaveOccurred())
	return newEntrant(st, func(name string) *chatv1.ClientEvent {
		return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: name}}}
	}, func(ev *chatv1.ServerEvent) (bool, *refusal) { return ev.GetJoined() != nil, refusalOf(ev.GetError()) })
}

func collabEntrant(ctx context.Context, conn *grpc.ClientConn, user string) *entrant {
	GinkgoHelper()
	st, err := collabv1.NewCollabServiceClient(conn).Edit(withToken(ctx, user))
	Expect(err).NotTo(HaveOccurred())
	return newEntrant(st, func(name string) *collabv1.ClientEvent {
		return &collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: name, ClientId: user + "-1"}}}
	}, func(ev *collabv1.ServerEvent) (bool, *refusal) {
		return ev.GetOpened() != nil, refusalOf(ev.GetError())
	})
}

func gameEntrant(ctx context.Context, conn *grpc.ClientConn, user string) *entrant {
	GinkgoHelper()
	st, err := gamev1.NewGameServiceClient(conn).Play(withToken(ctx, user))
	Expect(err).NotTo(HaveOccurred())
	return newEntrant(st, func(name string) *gamev1.ClientEvent {
		return &gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: name}}}
	}, func(ev *gamev1.ServerEvent) (bool, *refusal) { return ev.GetJoined() != nil, refusalOf(ev.GetError()) })
}
