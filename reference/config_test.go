package reference_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
)

var _ = Describe("Config and Build", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(15 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	parse := func(args ...string) (reference.Config, error) {
		cfg := reference.DefaultConfig()
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		cfg.RegisterFlags(fs)
		Expect(fs.Parse(args)).To(Succeed())
		return cfg, cfg.Finish(fs)
	}

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
