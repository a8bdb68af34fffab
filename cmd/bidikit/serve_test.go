package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// TestBidikit is the Ginkgo entry point of package main: the one suite of
// cmd/bidikit. Other commands' test files add specs, not another RunSpecs.
func TestBidikit(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "cmd/bidikit")
}

// bidikitBin is the binary built once for subprocess specs.
var bidikitBin string

var _ = SynchronizedBeforeSuite(func() []byte {
	dir, err := os.MkdirTemp("", "bidikit-bin-")
	Expect(err).NotTo(HaveOccurred())
	bin := filepath.Join(dir, "bidikit")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "go build: %s", out)
	return []byte(bin)
}, func(bin []byte) {
	bidikitBin = string(bin)
})

var _ = SynchronizedAfterSuite(func() {}, func() {
	_ = os.RemoveAll(filepath.Dir(bidikitBin))
})

var startLine = regexp.MustCompile(`^bidikit serve: listening grpc=(\S+) admin=(\S+) storage=(.+)$`)

// serveProc is one `bidikit serve` subprocess.
type serveProc struct {
	cmd   *exec.Cmd
	grpc  string
	admin string
	store string
	done  chan struct{} // closed when the process was reaped
	err   error         // Wait's result, set before done closes

	mu     sync.Mutex // guards stderr
	stderr strings.Builder
}

type lockedWriter struct{ p *serveProc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	_, _ = GinkgoWriter.Write(b)
	return w.p.stderr.Write(b)
}

func (p *serveProc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// startServe runs `bidikit serve --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0
// args...` and waits for its start line. The process is killed at cleanup.
func startServe(ctx context.Context, args ...string) *serveProc {
	p := &serveProc{done: make(chan struct{})}
	all := append([]string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--grace", "5s"}, args...)
	p.cmd = exec.Command(bidikitBin, all...)
	p.cmd.Stderr = lockedWriter{p}
	stdout, err := p.cmd.StdoutPipe()
	Expect(err).NotTo(HaveOccurred())
	Expect(p.cmd.Start()).To(Succeed())
	lines := make(chan string, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	DeferCleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	var line string
	Eventually(lines).WithContext(ctx).WithTimeout(30*time.Second).Should(Receive(&line), "no start line; stderr:\n%s", p.Stderr())
	m := startLine.FindStringSubmatch(line)
	Expect(m).NotTo(BeNil(), "start line %q", line)
	p.grpc, p.admin, p.store = m[1], m[2], m[3]
	return p
}

// exitCodeOf runs bidikit with args and returns its exit code and output.
func exitCodeOf(ctx context.Context, args ...string) (int, string) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, bidikitBin, args...).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	Expect(err).NotTo(HaveOccurred())
	return 0, string(out)
}

func dialChat(addr string) chatv1.ChatServiceClient {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(conn.Close)
	return chatv1.NewChatServiceClient(conn)
}

type chatStream = grpc.BidiStreamingClient[chatv1.ClientEvent, chatv1.ServerEvent]

func openChat(ctx context.Context, c chatv1.ChatServiceClient, token string) chatStream {
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	st, err := c.Connect(ctx)
	Expect(err).NotTo(HaveOccurred())
	return st
}

func joinEv(room string, resume *uint64) *chatv1.ClientEvent {
	return &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Join{Join: &chatv1.Join{Room: room, ResumeAfter: resume}}}
}

// closeChat ends a stream the interop way: CloseSend, then read to the end.
func closeChat(st chatStream) {
	Expect(st.CloseSend()).To(Succeed())
	for range 10_000 {
		if _, err := st.Recv(); err != nil {
			return
		}
	}
}

func writeFile(name, text string) string {
	p := filepath.Join(GinkgoT().TempDir(), name)
	Expect(os.WriteFile(p, []byte(text), 0o600)).To(Succeed())
	return p
}

var _ = Describe("bidikit serve", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(15 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("lists every flag with its default in --help", func(ctx SpecContext) {
		code, out := exitCodeOf(ctx, "serve", "--help")
		Expect(code).To(Equal(0))
		n := 0
		newServeCmd().Flags().VisitAll(func(f *pflag.Flag) {
			if f.Hidden { // --comparator: bench conn-ramp's, not the user's
				Expect(out).NotTo(ContainSubstring("--" + f.Name + " "))
				return
			}
			n++
			var line string
			for l := range strings.SplitSeq(out, "\n") {
				t := strings.TrimSpace(l)
				if strings.HasPrefix(t, "--"+f.Name+" ") || strings.Contains(t, ", --"+f.Name+" ") {
					line = l
				}
			}
			Expect(line).NotTo(BeEmpty(), "--%s missing from --help", f.Name)
			Expect(line).To(ContainSubstring("default"), "--%s shows no default", f.Name)
		})
		Expect(n).To(BeNumerically(">", 20))
		Expect(out).To(ContainSubstring("--chat-max-body-bytes"))
		Expect(out).To(ContainSubstring("bidikit serve: listening grpc="))
	}, SpecTimeout(40*time.Second))

	DescribeTable("exits 2 naming the flag on bad usage",
		func(ctx SpecContext, args []string, want string) {
			code, out := exitCodeOf(ctx, append([]string{"serve"}, args...)...)
			Expect(code).To(Equal(2), out)
			Expect(out).To(ContainSubstring(want))
		},
		Entry("unknown flag", []string{"--bogus"}, "unknown flag: --bogus", SpecTimeout(40*time.Second)),
		Entry("--addr without a port", []string{"--addr", "nope"}, `--addr is "nope", want host:port`, SpecTimeout(40*time.Second)),
		Entry("--admin-addr with a bad port", []string{"--admin-addr", "127.0.0.1:x"}, `--admin-addr is "127.0.0.1:x", want host:port`, SpecTimeout(40*time.Second)),
		Entry("not a number", []string{"--max-connections", "many"}, `"--max-connections"`, SpecTimeout(40*time.Second)),
		Entry("bad log format", []string{"--log-format", "xml"}, "--log-format", SpecTimeout(40*time.Second)),
		Entry("bad log level", []string{"--log-level", "loud"}, "--log-level", SpecTimeout(40*time.Second)),
		Entry("a stray argument", []string{"extra"}, "unknown command", SpecTimeout(40*time.Second)),
		Entry("no auth at all", []string{"--dev-auth=false"}, "--tokens", SpecTimeout(40*time.Second)),
		Entry("both auth modes", []string{"--dev-auth", "--tokens", "x"}, "--dev-auth and --tokens", SpecTimeout(40*time.Second)),
		Entry("missing tokens file", []string{"--tokens", "/nonexistent/tokens.txt"}, "--tokens", SpecTimeout(40*time.Second)),
		Entry("zero grace", []string{"--grace", "0s"}, "--grace", SpecTimeout(40*time.Second)),
		Entry("impossible flood guard limit", []string{"--h2-reset-burst", "-2"}, "--h2-reset-burst is -2, want >= 1", SpecTimeout(40*time.Second)),
		Entry("bad chat limit", []string{"--chat-max-body-bytes", "0"}, "max body bytes", SpecTimeout(40*time.Second)),
	)

	It("exits 2 naming the line of a bad --acl file", func(ctx SpecContext) {
		p := writeFile("acl.yaml", "rooms:\n  ops: [alice]\nromos: {}\n")
		code, out := exitCodeOf(ctx, "serve", "--acl", p)
		Expect(code).To(Equal(2), out)
		Expect(out).To(ContainSubstring("--acl: " + p + ":3:1:"))
		Expect(out).To(ContainSubstring(`unknown field "romos"`))
	}, SpecTimeout(40*time.Second))

	It("says at start-up that memory storage is lost on exit, and stops on SIGTERM", func(ctx SpecContext) {
		p := startServe(ctx)
		Expect(p.store).To(Equal("memory"))
		Expect(p.Stderr()).To(ContainSubstring("no --db: messages are kept in memory only and lost on exit"))
		Expect(p.Stderr()).To(ContainSubstring("--dev-auth"))

		st := openChat(ctx, dialChat(p.grpc), "alice")
		Expect(st.Send(joinEv("lobby", nil))).To(Succeed())
		ev, err := st.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetJoined().GetMembers()).To(ConsistOf("alice"))

		Expect(p.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		_, err = st.Recv()
		Expect(status.Code(err)).To(Equal(codes.Unavailable))
		Eventually(p.done).WithContext(ctx).Should(BeClosed())
		Expect(p.err).NotTo(HaveOccurred(), "exit status after SIGTERM")
		Expect(p.Stderr()).To(ContainSubstring("reference server stopped"))
	}, SpecTimeout(60*time.Second))

	Context("with --tokens and --acl", func() {
		var p *serveProc
		BeforeEach(func(ctx SpecContext) {
			tokens := writeFile("tokens.txt", "# test tokens\nt-alice alice\nt-bob bob\n")
			acl := writeFile("acl.yaml", "rooms:\n  ops: [alice]\n")
			p = startServe(ctx, "--tokens", tokens, "--acl", acl)
			Expect(p.Stderr()).NotTo(ContainSubstring("--dev-auth:"))
		}, NodeTimeout(40*time.Second))

		DescribeTable("authenticates",
			func(ctx SpecContext, token string, want codes.Code) {
				st := openChat(ctx, dialChat(p.grpc), token)
				Expect(st.Send(joinEv("lobby", nil))).To(Or(Succeed(), MatchError(io.EOF)))
				ev, err := st.Recv()
				if want == codes.OK {
					Expect(err).NotTo(HaveOccurred())
					Expect(ev.GetJoined().GetMembers()).To(ContainElement("bob"))
					closeChat(st)
					return
				}
				Expect(status.Code(err)).To(Equal(want))
			},
			Entry("missing token", "", codes.Unauthenticated, SpecTimeout(30*time.Second)),
			Entry("unknown token", "t-mallory", codes.Unauthenticated, SpecTimeout(30*time.Second)),
			Entry("a listed token", "t-bob", codes.OK, SpecTimeout(30*time.Second)),
		)

		It("refuses a room the ACL closes with PERMISSION_DENIED and keeps the stream", func(ctx SpecContext) {
			c := dialChat(p.grpc)
			bob := openChat(ctx, c, "t-bob")
			Expect(bob.Send(joinEv("ops", nil))).To(Succeed())
			ev, err := bob.Recv()
			Expect(err).NotTo(HaveOccurred())
			Expect(ev.GetError().GetCode()).To(BeEquivalentTo(codes.PermissionDenied))
			Expect(ev.GetError().GetRoom()).To(Equal("ops"))
			Expect(bob.Send(joinEv("lobby", nil))).To(Succeed())
			ev, err = bob.Recv()
			Expect(err).NotTo(HaveOccurred())
			Expect(ev.GetJoined().GetRoom()).To(Equal("lobby"))
			closeChat(bob)

			alice := openChat(ctx, c, "t-alice")
			Expect(alice.Send(joinEv("ops", nil))).To(Succeed())
			ev, err = alice.Recv()
			Expect(err).NotTo(HaveOccurred())
			Expect(ev.GetJoined().GetRoom()).To(Equal("ops"))
			closeChat(alice)
		}, SpecTimeout(30*time.Second))
	})

	It("keeps every acknowledged message across kill -9 with --db", func(ctx SpecContext) {
		db := filepath.Join(GinkgoT().TempDir(), "chat.db")
		p := startServe(ctx, "--db", db)
		Expect(p.store).To(Equal("sqlite:" + db))

		const n = 60
		acked := map[string]uint64{} // client_msg_id -> seq
		st := openChat(ctx, dialChat(p.grpc), "alice")
		Expect(st.Send(joinEv("durable", nil))).To(Succeed())
		ev, err := st.Recv()
		Expect(err).NotTo(HaveOccurred())
		Expect(ev.GetJoined()).NotTo(BeNil())
		for i := 1; i <= n; i++ {
			Expect(st.Send(&chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{
				Room: "durable", ClientMsgId: fmt.Sprintf("m%03d", i), SenderSeq: uint64(i), Body: fmt.Sprintf("message %d", i)}}})).To(Succeed())
		}
		// Collect acks (own messages also come back as Messages); the
		// server is killed as soon as the last ack arrives.
		for len(acked) < n {
			ev, err := st.Recv()
			Expect(err).NotTo(HaveOccurred())
			if a := ev.GetAck(); a != nil {
				acked[a.GetClientMsgId()] = a.GetSeq()
			}
			Expect(ev.GetError()).To(BeNil())
		}
		Expect(p.cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
		Eventually(p.done).WithContext(ctx).Should(BeClosed())

		p2 := startServe(ctx, "--db", db)
		st2 := openChat(ctx, dialChat(p2.grpc), "bob")
		zero := uint64(0)
		Expect(st2.Send(joinEv("durable", &zero))).To(Succeed())
		ev, err = st2.Recv()
		Expect(err).NotTo(HaveOccurred())
		joined := ev.GetJoined()
		Expect(joined).NotTo(BeNil())
		Expect(joined.GetResumeComplete()).To(BeTrue())
		Expect(joined.GetHeadSeq()).To(BeNumerically(">=", n))

		replayed := map[string]uint64{}
		var last uint64
		for last < joined.GetHeadSeq() {
			ev, err := st2.Recv()
			Expect(err).NotTo(HaveOccurred())
			msgs := ev.GetBatch().GetMessages()
			if m := ev.GetMessage(); m != nil {
				msgs = append(msgs, m)
			}
			for _, m := range msgs {
				Expect(m.GetSeq()).To(Equal(last+1), "gap or duplicate in replay")
				last = m.GetSeq()
				replayed[m.GetClientMsgId()] = m.GetSeq()
			}
		}
		for id, seq := range acked {
			Expect(replayed).To(HaveKeyWithValue(id, seq), "acked message %s lost or renumbered", id)
		}
		closeChat(st2)
	}, SpecTimeout(90*time.Second))
})
