package check_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"google.golang.org/grpc"
	channelzsvc "google.golang.org/grpc/channelz/service"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/scenario"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// leakyChat is a minimal chat server that, with leak set, leaves one
// goroutine behind per stream it served (holdSession, parked until the
// spec releases it). It answers Join with Joined and ends a stream cleanly
// on the client's CloseSend. It lives in this test file, independent of
// any corpus of broken servers.
type leakyChat struct {
	chatv1.UnimplementedChatServiceServer
	leak    bool
	release chan struct{} // closed by the spec's cleanup: every holdSession returns
	held    sync.WaitGroup
}

// holdSession is the leak: a per-stream goroutine nobody stops when the
// stream ends.
func (s *leakyChat) holdSession() {
	defer s.held.Done()
	<-s.release
}

func (s *leakyChat) Connect(st grpc.BidiStreamingServer[chatv1.ClientEvent, chatv1.ServerEvent]) error {
	if s.leak {
		s.held.Add(1)
		go s.holdSession()
	}
	for {
		in, err := st.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if j := in.GetJoin(); j != nil {
			if err := st.Send(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{
				Joined: &chatv1.Joined{Room: j.Room, ResumeComplete: true}}}); err != nil {
				return err
			}
		}
	}
}

// startLeakyChat serves a leakyChat (with channelz) on a loopback port and
// this process's pprof on an admin HTTP server; both stop, and every held
// goroutine is released, at the spec's cleanup.
func startLeakyChat(leak bool) (addr, adminURL string) {
	s := &leakyChat{leak: leak, release: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	srv := grpc.NewServer()
	chatv1.RegisterChatServiceServer(srv, s)
	channelzsvc.RegisterChannelzServiceToServer(srv)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(lis) }()
	DeferCleanup(func() {
		srv.Stop()
		<-served
		close(s.release)
		s.held.Wait()
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	web := httptest.NewServer(mux)
	DeferCleanup(web.Close)
	return lis.Addr().String(), web.URL
}

// leakyScenario: 12 lurkers, one stream each, for a second; leaks only.
const leakyScenario = `name: leaks-e2e
service: chat
seed: 3
duration: 1s
roles:
  - {name: lurker, count: 12, behaviour: lurker, rooms: 1}
checks:
  - leaks: {settle: 2s}
`

// The leaks verdict through the real engine over real gRPC: a server that
// leaks one goroutine per ended stream fails with few streams, naming the
// function that holds them; the same server without the leak passes.
// Under -race this costs about 10 s (two 1 s runs, the failing one waits
// its 2 s settle).
var _ = Describe("leaks through the engine", func() {
	BeforeEach(func() {
		base := gleak.Goroutines()
		// Registered first, so it runs last: after the servers stop.
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(base))
		})
	})

	DescribeTable("judges a small server by the goroutines its ended streams left",
		func(ctx SpecContext, leak bool, status check.Status, summary, evidence string) {
			// evidence is a regular expression: the baseline may hold a
			// goroutine from the engine's preflight probe stream.
			addr, adminURL := startLeakyChat(leak)
			s, err := scenario.Parse("leaks-e2e.yaml", []byte(leakyScenario))
			Expect(err).NotTo(HaveOccurred())
			res, err := engine.Run(ctx, s, engine.WithTarget(addr), engine.WithServerEnv(adminURL))
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Checks).To(HaveLen(1))
			v := res.Checks[0]
			Expect(v.Name).To(Equal("leaks"))
			Expect(v.Status).To(Equal(status), "%s\n%v", v.Summary, v.Evidence)
			Expect(v.Summary).To(ContainSubstring(summary))
			if evidence != "" {
				Expect(v.Evidence).To(ContainElement(HaveField("Detail", MatchRegexp(evidence))), "%s\n%v", v.Summary, v.Evidence)
			}
		},
		Entry("one goroutine leaked per ended stream: fails, naming holdSession", true, check.Fail,
			"12 streams ended", `^\+12 goroutines \(\d+ at baseline, \d+ after\) in check_test\.\(\*leakyChat\)\.holdSession leaks_e2e_test\.go:\d+$`, SpecTimeout(time.Minute)),
		Entry("the same server without the leak: passes, saying what it saw", false, check.Pass,
			"12 streams ended (12 opened)", "", SpecTimeout(time.Minute)),
	)
})
