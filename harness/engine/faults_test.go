package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/strictyaml"
)

// funcFault applies fn to every target: the fault's effect, without
// depending on the registered fault implementations.
type funcFault func(fault.Client)

func (f funcFault) Inject(_ context.Context, _ fault.Env, targets []fault.Target) error {
	for _, t := range targets {
		f(t.(fault.Client))
	}
	return nil
}

// testFaults holds the faults the engine's tests inject, by id. A scenario
// is plain data, so its steps name them: the registered faults
// "engine-test" (stream) and "engine-test-connection" take {id: ID} and
// build the fault stored under it, through the registry like any other.
var (
	testFaults  sync.Map // id -> fault.Fault
	testFaultID atomic.Int64
)

func init() {
	for name, scope := range map[string]fault.Scope{"engine-test": fault.Stream, "engine-test-connection": fault.Connection} {
		fault.Register(fault.Spec{Name: name, Scope: scope, Summary: "an engine test's own fault",
			New: func(decode func(any) error) (fault.Fault, error) {
				var p struct {
					ID string `yaml:"id"`
				}
				if err := decode(&p); err != nil {
					return nil, err
				}
				f, ok := testFaults.Load(p.ID)
				if !ok {
					return nil, fmt.Errorf("no engine test fault with id %q", p.ID)
				}
				return f.(fault.Fault), nil
			}})
	}
}

// withTestFault makes step (its schedule and Scope given) inject f.
func withTestFault(step scenario.FaultStep, f fault.Fault) scenario.FaultStep {
	id := strconv.FormatInt(testFaultID.Add(1), 10)
	testFaults.Store(id, f)
	step.Fault = "engine-test"
	if step.Scope == fault.Connection {
		step.Fault = "engine-test-connection"
	}
	step.Params = strictyaml.Raw{YAML: "id: " + strconv.Quote(id)}
	return step
}

// faultScenario: two lurkers on the recorder for a long run; fn fires on
// both at 300ms. The spec cancels the run once the server saw the effect.
func faultScenario(fn func(fault.Client)) *scenario.Scenario {
	return &scenario.Scenario{
		Name: "fault", File: "fault.yaml", Service: scenario.Chat, Seed: 1, Duration: time.Minute,
		Roles: []scenario.Role{{Name: "lurk", Count: 2, Behaviour: "lurker", Scopes: 1}},
		Faults: []scenario.FaultStep{withTestFault(scenario.FaultStep{Scope: fault.Stream,
			At: 300 * time.Millisecond, Probability: 1}, funcFault(fn))},
	}
}

var _ = Describe("stream faults, seen from the server", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		// Registered first, so it runs last: after the spec's own cleanups.
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	DescribeTable("each fault has its effect",
		func(ctx SpecContext, push bool, fn func(fault.Client), seen func(*recorder) bool) {
			rec, addr, stop := startRecorder(push)
			DeferCleanup(stop)
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := engine.Run(rctx, faultScenario(fn), engine.WithTarget(addr))
				done <- err
			}()
			Eventually(func() bool { return seen(rec) }).WithTimeout(15 * time.Second).Should(BeTrue())
			cancel()
			Eventually(done).WithTimeout(15 * time.Second).Should(Receive())
		},
		Entry("CancelStream: the server's Recv sees the cancellation", false,
			func(c fault.Client) { c.CancelStream() },
			func(r *recorder) bool { return contains(r.Ends(), "canceled") }, SpecTimeout(30*time.Second)),
		Entry("HalfClose: the server's Recv gets io.EOF", false,
			func(c fault.Client) { c.HalfClose() },
			func(r *recorder) bool { return contains(r.Ends(), "eof") }, SpecTimeout(30*time.Second)),
		Entry("AbruptClose: the connection is gone", false,
			func(c fault.Client) { c.AbruptClose() },
			func(r *recorder) bool { return r.ConnEnds() > 0 }, SpecTimeout(30*time.Second)),
		Entry("StopReading: the server's writes block", true,
			func(c fault.Client) { c.StopReading() },
			func(r *recorder) bool { return r.LongestStall() > 2*time.Second }, SpecTimeout(30*time.Second)),
		Entry("SendMalformed: the server cannot decode the message", false,
			func(c fault.Client) { c.SendMalformed() },
			func(r *recorder) bool { return contains(r.Ends(), "undecodable") }, SpecTimeout(30*time.Second)),
		Entry("SendOversized: the server receives the large message", false,
			func(c fault.Client) { c.SendOversized(200_000) },
			func(r *recorder) bool { return r.MaxBody() >= 200_000 }, SpecTimeout(30*time.Second)),
		Entry("Burst: the server receives the burst", false,
			func(c fault.Client) { c.Burst(50) },
			func(r *recorder) bool { return r.Sends() >= 100 }, SpecTimeout(30*time.Second)),
		Entry("ResumeStale: the client rejoins behind its last position", false,
			func(c fault.Client) { c.ResumeStale(3) },
			func(r *recorder) bool { return contains64(r.Resumes(), 7) }, SpecTimeout(30*time.Second)),
		Entry("Pause: the server's writes block while paused", true,
			func(c fault.Client) { c.Pause(5 * time.Second) },
			func(r *recorder) bool { return r.LongestStall() > 2*time.Second }, SpecTimeout(30*time.Second)),
	)
})

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func contains64(xs []uint64, x uint64) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
