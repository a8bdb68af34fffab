package suite_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/harness/suite"
)

const short = `name: %s
service: chat
seed: 3
duration: 1500ms
ramp: 200ms
settle: 200ms
roles:
  - {name: chatter, count: 3, behaviour: chatter, rooms: 1, rate: 5/s}
checks: [no-gaps, delivery-order]
`

func parse(name string) *scenario.Scenario {
	GinkgoHelper()
	s, err := scenario.Parse(name+".yaml", []byte(fmt.Sprintf(short, name)))
	Expect(err).NotTo(HaveOccurred())
	return s
}

// deadAddr is a loopback address nothing listens on.
func deadAddr() string {
	GinkgoHelper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := lis.Addr().String()
	Expect(lis.Close()).To(Succeed())
	return addr
}

var _ = Describe("a suite", func() {
	It("runs every scenario against the in-process reference and writes a raw section for each", func(ctx SpecContext) {
		st, err := suite.Start(ctx, suite.Target{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(st.Close)
		Expect(st.Addrs).To(HaveLen(1))
		Expect(st.AdminURL).To(HavePrefix("http://"))
		raw := filepath.Join(GinkgoT().TempDir(), "run.raw")
		w, err := shard.Create(raw)
		Expect(err).NotTo(HaveOccurred())
		run, err := suite.Run(ctx, []*scenario.Scenario{parse("one"), parse("two")}, st, suite.Options{Raw: w})
		Expect(err).NotTo(HaveOccurred())
		Expect(w.Close()).To(Succeed())
		Expect(run.Scenarios).To(HaveLen(2))
		Expect(run.Passed).To(BeTrue(), "%+v", run.Scenarios)
		Expect(run.Target).To(Equal(st.Addrs[0]))
		merged, err := shard.Merge(ctx, raw)
		Expect(err).NotTo(HaveOccurred())
		Expect(merged).To(HaveLen(2), "raw sections")
		Expect(merged[1].Result.Name).To(Equal("two"))
	}, SpecTimeout(60*time.Second))

	It("does not try the scenarios after the target became unreachable, and says which one found it", func(ctx SpecContext) {
		st, err := suite.Start(ctx, suite.Target{Addrs: []string{deadAddr()}})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(st.Close)
		explained := 0
		run, err := suite.Run(ctx, []*scenario.Scenario{parse("first"), parse("second")}, st, suite.Options{
			Engine: []engine.Option{engine.WithDialTimeout(500 * time.Millisecond)},
			Explain: func(_ context.Context, err error) (error, string) {
				explained++
				return errors.New("better: " + err.Error()), "give --insecure"
			}})
		var fatal *suite.Fatal
		Expect(errors.As(err, &fatal)).To(BeTrue(), "%v", err)
		Expect(fatal.In).To(Equal("first"))
		Expect(fatal.Err).To(MatchError(HavePrefix("better: ")))
		Expect(explained).To(Equal(1))
		Expect(run.Passed).To(BeFalse())
		Expect(run.Scenarios[0].Failure).To(ContainSubstring("give --insecure"))
		Expect(run.Scenarios[1].Failure).To(Equal("not tried: the target already failed first"))
	}, SpecTimeout(30*time.Second))

	It("does not try later scenarios of a service the target refused, and still runs the others", func(ctx SpecContext) {
		st, err := suite.Start(ctx, suite.Target{}) // the reference: it serves chat, collab and game
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(st.Close)
		refused := parse("refused")
		refused.Service = "echo-refused"
		run, err := suite.Run(ctx, []*scenario.Scenario{refused, parse("served"), refused}, st, suite.Options{
			RunOne: func(ctx context.Context, s *scenario.Scenario, opts []engine.Option) (result.Scenario, error) {
				if s.Service == "echo-refused" { // what the engine's probe says of a service the server lacks
					return result.Scenario{Name: s.Name, Failure: "refused"}, fmt.Errorf("probe: %w", engine.ErrRejected)
				}
				return engine.Run(ctx, s, opts...)
			}})
		var fatal *suite.Fatal
		Expect(errors.As(err, &fatal)).To(BeTrue(), "%v", err)
		Expect(fatal.In).To(Equal("refused"))
		Expect(run.Scenarios[1].Passed).To(BeTrue(), "a scenario of another service was not run: %+v", run.Scenarios[1])
		Expect(run.Scenarios[2].Failure).To(Equal("not tried: the target already failed refused"))
	}, SpecTimeout(60*time.Second))

	It("marks the scenarios after an interrupt as not run", func(ctx SpecContext) {
		st, err := suite.Start(ctx, suite.Target{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(st.Close)
		ictx, cancel := context.WithCancel(ctx)
		cancel()
		run, err := suite.Run(ictx, []*scenario.Scenario{parse("a"), parse("b")}, st, suite.Options{})
		Expect(err).To(MatchError(engine.ErrInterrupted))
		Expect(run.Interrupted).NotTo(BeEmpty())
		for _, r := range run.Scenarios {
			Expect(r.Interrupted).To(HavePrefix("not run: the run was interrupted"))
			Expect(r.Passed).To(BeFalse())
		}
	}, SpecTimeout(30*time.Second))
})
