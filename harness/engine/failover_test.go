package engine_test

import (
	"log/slog"
	"net"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/refcluster"
)

// eventLog is a Tap that keeps a copy of every event, in order.
type eventLog struct {
	mu  sync.Mutex
	evs []event.Event
}

func (l *eventLog) Begin(time.Time)  {}
func (l *eventLog) End(engine.Final) {}
func (l *eventLog) Events(b []event.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, b...)
	l.mu.Unlock()
}

func (l *eventLog) all() []event.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]event.Event(nil), l.evs...)
}

// connects lists, per client, the target each of its streams reached
// (Connect's Detail), in order.
func connects(evs []event.Event) map[int][]string {
	out := map[int][]string{}
	for _, e := range evs {
		if e.Kind == event.Connect {
			out[e.Client] = append(out[e.Client], e.Detail)
		}
	}
	return out
}

// deadAddr is a loopback address nothing listens on (a port just released).
func deadAddr() string {
	GinkgoHelper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := lis.Addr().String()
	Expect(lis.Close()).To(Succeed())
	return addr
}

// lurkers is a chat scenario of n lurkers in one room for d, without
// checks: what it proves is where the clients connect.
func lurkers(n, perConn int, d time.Duration) *scenario.Scenario {
	return &scenario.Scenario{Name: "spread", File: "spread.yaml", Service: scenario.Chat, Seed: 3, Duration: d,
		StreamsPerConn: perConn,
		Roles:          []scenario.Role{{Name: "lurk", Count: n, Behaviour: "lurker", Scopes: 1}}}
}

// failoverChat: chatters and lurkers in two rooms; instance A is killed
// at 1.2 s. Client i prefers target i mod 2, so the even clients start on A.
const failoverChat = `name: failover
service: chat
seed: 5
duration: 3s
ramp: 200ms
settle: 0s
roles:
  - name: chatter
    count: 6
    behaviour: chatter
    rooms: 2
    rate: 10/s
  - name: lurker
    count: 2
    behaviour: lurker
    rooms: 2
faults:
  - fault: kill-server
    at: 1200ms
checks:
  - total-order
  - no-gaps
  - no-duplicates
  - no-lost-acks
  - sender-fifo
`

var _ = Describe("several targets", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			// nats-server's background loops included.
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("moves the clients of a killed instance to the next target, and the run passes its checks", func(ctx SpecContext) {
		log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
		ins := refcluster.StartN(GinkgoT(), 2, refcluster.StartNATS(GinkgoT()).ClientURL(), log)
		a, b := ins[0], ins[1]
		s, err := scenario.Parse("failover.yaml", []byte(failoverChat))
		Expect(err).NotTo(HaveOccurred())
		k := refcluster.NewKiller(a)
		var tap eventLog
		res, err := engine.Run(ctx, s, engine.WithTargets(a.Addr(), b.Addr()), engine.WithFaultEnv(k),
			engine.WithTap(&tap), engine.WithLogger(log))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(k.Killed()).To(BeClosed(), "the kill-server fault never fired")
		Expect(res.Passed).To(BeTrue(), describe(res))
		Expect(res.Checks).To(HaveLen(5))
		Expect(res.Messages.Acked).To(BeNumerically(">", 0))

		// Every client that started on A came back on B, and joined there.
		evs := tap.all()
		onA := 0
		for client, reached := range connects(evs) {
			Expect(reached[0]).To(Equal([]string{a.Addr(), b.Addr()}[client%2]), "client %d's first stream", client)
			if reached[0] != a.Addr() {
				Expect(reached).To(HaveEach(b.Addr()), "client %d left B", client)
				continue
			}
			onA++
			Expect(reached[len(reached)-1]).To(Equal(b.Addr()), "client %d never reconnected to B after A died: %v", client, reached)
		}
		Expect(onA).To(Equal(4))
		lastConnect := map[int]string{}
		rejoined := map[int]bool{}
		for _, e := range evs {
			switch e.Kind {
			case event.Connect:
				lastConnect[e.Client] = e.Detail
			case event.Join:
				if lastConnect[e.Client] == b.Addr() && e.Client%2 == 0 {
					rejoined[e.Client] = true
				}
			}
		}
		Expect(rejoined).To(HaveLen(4), "clients of A that joined their rooms again on B")
	}, SpecTimeout(50*time.Second))

	DescribeTable("spread the clients over the targets, one rotation per connection",
		func(ctx SpecContext, perConn int) {
			recA, addrA, stopA := startRecorder(false)
			DeferCleanup(stopA)
			recB, addrB, stopB := startRecorder(false)
			DeferCleanup(stopB)
			var tap eventLog
			res, err := engine.Run(ctx, lurkers(8, perConn, 500*time.Millisecond), engine.WithTargets(addrA, addrB), engine.WithTap(&tap))
			Expect(err).NotTo(HaveOccurred(), describe(res))
			// Connection g (clients g*perConn ..) prefers target g mod 2.
			for client, reached := range connects(tap.all()) {
				Expect(reached).To(HaveEach([]string{addrA, addrB}[(client/perConn)%2]), "client %d", client)
			}
			Expect(recA.Streams()).To(Equal(4))
			Expect(recB.Streams()).To(Equal(4))
			// Plus the env's own connection to each target (preflight).
			Expect(recA.ConnBegins()).To(BeEquivalentTo(8/perConn/2 + 1))
			Expect(recB.ConnBegins()).To(BeEquivalentTo(8/perConn/2 + 1))
		},
		Entry("a connection per client", 1, SpecTimeout(20*time.Second)),
		Entry("two streams per connection", 2, SpecTimeout(20*time.Second)),
		Entry("four streams per connection", 4, SpecTimeout(20*time.Second)),
	)

	It("passes preflight while one target answers, and sends everyone to it", func(ctx SpecContext) {
		rec, addr, stop := startRecorder(false)
		DeferCleanup(stop)
		dead := deadAddr()
		var tap eventLog
		res, err := engine.Run(ctx, lurkers(4, 1, 500*time.Millisecond), engine.WithTargets(dead, addr),
			engine.WithTap(&tap), engine.WithDialTimeout(2*time.Second))
		Expect(err).NotTo(HaveOccurred(), describe(res))
		Expect(rec.Streams()).To(Equal(4))
		for client, reached := range connects(tap.all()) {
			Expect(reached).To(HaveEach(addr), "client %d", client)
		}
	}, SpecTimeout(20*time.Second))

	DescribeTable("fail preflight naming every target when none answers",
		func(ctx SpecContext, option func(a, b string) engine.Option) {
			a, b := deadAddr(), deadAddr()
			res, err := engine.Run(ctx, lurkers(2, 1, time.Second), option(a, b), engine.WithDialTimeout(time.Second))
			Expect(err).To(MatchError(engine.ErrUnreachable))
			Expect(err.Error()).To(And(ContainSubstring(a), ContainSubstring(b), ContainSubstring("none of the 2 targets")))
			Expect(res.Failure).To(Equal(err.Error()))
		},
		Entry("WithTargets", func(a, b string) engine.Option { return engine.WithTargets(a, b) }, SpecTimeout(10*time.Second)),
		Entry("WithTarget with a comma-separated list", func(a, b string) engine.Option { return engine.WithTarget(a + "," + b) }, SpecTimeout(10*time.Second)),
	)

	It("refuses connection faults with several targets, naming the fault's line", func(ctx SpecContext) {
		s := lurkers(1, 1, time.Second)
		s.Faults = []scenario.FaultStep{{Fault: "latency", Line: 12, Scope: fault.Connection,
			At: time.Millisecond, Probability: 1}}
		_, err := engine.Run(ctx, s, engine.WithTargets("127.0.0.1:1", "127.0.0.1:2"))
		Expect(err).To(MatchError(And(ContainSubstring("spread.yaml:12"), ContainSubstring("single target"))))
	}, SpecTimeout(5*time.Second))
})

var _ = DescribeTable("target lists",
	func(list string, want []string, wantErr string) {
		got, err := engine.ParseTargets(list)
		if wantErr != "" {
			Expect(err).To(MatchError(ContainSubstring(wantErr)))
			return
		}
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal(want))
	},
	Entry("one address", "127.0.0.1:7001", []string{"127.0.0.1:7001"}, ""),
	Entry("a list, spaces ignored", "a:1, b:2 ,[::1]:3", []string{"a:1", "b:2", "[::1]:3"}, ""),
	Entry("an empty element", "a:1,,b:2", nil, `element 2 of "a:1,,b:2" is empty`),
	Entry("a trailing comma", "a:1,", nil, `element 2 of "a:1," is empty`),
	Entry("no port", "a:1,127.0.0.1", nil, `"127.0.0.1": missing port in address`),
	Entry("an empty port", "a:", nil, `"a:": missing port`),
	Entry("a URL", "http://a:1", nil, `"http://a:1": too many colons`),
	Entry("a duplicate", "a:1,a:1", nil, `"a:1" is listed twice`),
	Entry("nothing", " ", nil, "no address given"),
)
