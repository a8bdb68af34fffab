package check_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

// stack is one group of a fake debug=1 goroutine profile: n goroutines
// parked in frames ("pkg.Func /path/file.go:line", innermost first).
type stack struct {
	n      int
	frames []string
}

// idle is what the fake server runs at its baseline.
var idle = []stack{
	{4, []string{"runtime.gopark /go/src/runtime/proc.go:435", "net/http.(*conn).serve /go/src/net/http/server.go:2100"}},
	{6, []string{"google.golang.org/grpc/internal/transport.(*http2Server).keepalive /x/transport/http2_server.go:1180"}},
}

// held is n goroutines leaked by a handler that never returns.
func held(n int) stack {
	return stack{n, []string{
		"runtime.gopark /go/src/runtime/proc.go:435",
		"runtime.chanrecv1 /go/src/runtime/chan.go:489",
		"example.com/leaky.(*server).holdSession /src/leaky/server.go:42",
		"example.com/leaky.(*server).Connect.gowrap1 /src/leaky/server.go:30",
	}}
}

// profileText renders groups in the debug=1 format, as net/http/pprof does.
func profileText(groups []stack) string {
	var b strings.Builder
	total := 0
	for _, g := range groups {
		total += g.n
	}
	fmt.Fprintf(&b, "goroutine profile: total %d\n", total)
	for i, g := range groups {
		fmt.Fprintf(&b, "%d @ 0x47d92e 0x4158ee 0x%x\n", g.n, 0x4dc019+i)
		if i%2 == 1 {
			b.WriteString("# labels: {\"k\":\"v\"}\n")
		}
		for j, f := range g.frames {
			fn, file, _ := strings.Cut(f, " ")
			fmt.Fprintf(&b, "#\t0x%x\t%s+0x18\t\t\t%s\n", 0x4dc018+j, fn, file)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// admin is a fake server for the leaks checker: an admin HTTP endpoint
// serving a debug=1 goroutine profile, a heap profile line and /metrics,
// and channelz figures. The spec sets what it answers; mu guards it (the
// checker reads from its own goroutine).
type admin struct {
	mu         sync.Mutex
	stacks     []stack
	pprof      bool  // serve /debug/pprof/goroutine (else 404: /metrics only)
	heap       int64 // HeapInuse; -1: no heap profile
	down       bool  // every admin request answers 503
	channelz   bool
	sockets    int
	streams    int
	channelErr error

	srv *httptest.Server
}

func newAdmin() *admin {
	a := &admin{stacks: idle, pprof: true, heap: 8 << 20, channelz: true, sockets: 1}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	DeferCleanup(a.srv.Close)
	return a
}

func (a *admin) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	total := 0
	for _, g := range a.stacks {
		total += g.n
	}
	switch {
	case r.URL.Path == "/debug/pprof/goroutine" && a.pprof && r.URL.Query().Get("debug") == "1":
		fmt.Fprint(w, profileText(a.stacks))
	case r.URL.Path == "/debug/pprof/heap" && a.heap >= 0 && r.URL.Query().Get("gc") == "1":
		fmt.Fprintf(w, "heap profile: 1: 2 [3: 4] @ heap/1048576\n\n# runtime.MemStats\n# HeapAlloc = 123\n# HeapInuse = %d\n# Stack = 1 / 2\n", a.heap)
	case r.URL.Path == "/metrics":
		fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines %d\ngo_memstats_heap_inuse_bytes %d\n", total, max(a.heap, 0))
	default:
		http.NotFound(w, r)
	}
}

// set changes what the fake server answers.
func (a *admin) set(fn func(a *admin)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(a)
}

// env is the check.Env the checker gets: a's admin URL and channelz.
func (a *admin) env() check.Env { return adminEnv{a} }

type adminEnv struct{ a *admin }

func (e adminEnv) AdminURL() string { return e.a.srv.URL }
func (e adminEnv) Channelz(context.Context) (int, int, bool, error) {
	e.a.mu.Lock()
	defer e.a.mu.Unlock()
	if e.a.channelErr != nil {
		return 0, 0, false, e.a.channelErr
	}
	return e.a.sockets, e.a.streams, e.a.channelz, nil
}
func (e adminEnv) Healthy(context.Context) (bool, error) { return true, nil }

// streamsEnded is the events of n client streams that opened and ended,
// plus failed opens that never opened.
func streamsEnded(n, failed int) []event.Event {
	var evs []event.Event
	for i := range n {
		evs = append(evs,
			event.Event{Kind: event.Connect, Client: i, Role: "r", At: time.Duration(i) * time.Millisecond},
			event.Event{Kind: event.Disconnect, Client: i, Role: "r", Code: codes.OK, At: time.Duration(i+1) * time.Millisecond})
	}
	for i := range failed {
		evs = append(evs, event.Event{Kind: event.Disconnect, Client: n + i, Role: "r", Code: codes.Unavailable})
	}
	return evs
}

func ptr[T any](v T) *T { return &v }

// leakCase is one row of the leaks table: what the server does after the
// baseline, how many streams the run ended, and what the verdict must say.
type leakCase struct {
	params   func(p *check.LeakParams)
	ended    int
	failed   int
	after    func(a *admin)
	status   check.Status
	summary  []string // substrings of the summary
	evidence []string // substrings that must each appear in some evidence detail
	absent   []string // substrings no evidence detail may hold
}

var _ = Describe("leaks", func() {
	DescribeTable("judges the server after the run",
		func(ctx SpecContext, c leakCase) {
			a := newAdmin()
			ck, err := check.New("leaks", func(into any) error {
				p := into.(*check.LeakParams)
				p.Settle = 600 * time.Millisecond
				if c.params != nil {
					c.params(p)
				}
				return nil
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
			a.set(func(a *admin) { a.stacks = append(append([]stack{}, idle...), held(400)); a.streams = 50 }) // under load
			for _, e := range streamsEnded(c.ended, c.failed) {
				ck.Observe(&e)
			}
			a.set(func(a *admin) { a.stacks, a.streams = idle, 0 })
			if c.after != nil {
				a.set(c.after)
			}
			v := ck.Verdict(ctx, a.env())
			Expect(v.Name).To(Equal("leaks"))
			Expect(v.Status).To(Equal(c.status), "%s\n%v", v.Summary, v.Evidence)
			for _, s := range c.summary {
				Expect(v.Summary).To(ContainSubstring(s))
			}
			for _, s := range c.evidence {
				Expect(v.Evidence).To(ContainElement(HaveField("Detail", ContainSubstring(s))), "%s\n%v", v.Summary, v.Evidence)
			}
			for _, s := range c.absent {
				Expect(v.Evidence).NotTo(ContainElement(HaveField("Detail", ContainSubstring(s))))
			}
			if v.Status != check.Fail {
				Expect(v.Violations).To(BeZero())
			}
			Expect(len(v.Evidence)).To(BeNumerically("<=", check.MaxEvidence))
			for _, e := range v.Evidence {
				Expect(len(e.Detail)).To(BeNumerically("<=", 700))
			}
		},
		Entry("back at the baseline: passes and says what it observed", leakCase{
			ended: 40, status: check.Pass,
			summary: []string{"40 streams ended (40 opened)", "goroutines 10 (baseline 10, +0, allowed +6 = 2 + 0.1 x 40 ended streams)",
				"heap 8.0 MiB (baseline 8.0 MiB", "sockets 1 (baseline 1", "streams 0 (baseline 0"},
		}, SpecTimeout(20*time.Second)),
		Entry("3 ended streams, each leaking a goroutine: fails and names the stack that grew", leakCase{
			ended: 3, after: func(a *admin) { a.stacks = append(a.stacks, held(3)) }, status: check.Fail,
			summary:  []string{"goroutines +3 (allowed +2)", "3 streams ended"},
			evidence: []string{"goroutines 13 vs baseline 10 (+3, allowed +2 = 2 + 0.1 x 3 ended streams)", "+3 goroutines (0 at baseline, 3 after) in leaky.(*server).holdSession server.go:42 <- leaky.(*server).Connect.gowrap1 server.go:30"},
			absent:   []string{"runtime.gopark", "runtime.chanrecv1", "keepalive"},
		}, SpecTimeout(20*time.Second)),
		Entry("the harness's own in-process toxiproxy goroutines are not the server's", leakCase{
			ended: 3, status: check.Pass,
			after: func(a *admin) {
				a.stacks = append(a.stacks, stack{16, []string{
					"runtime.gopark /go/src/runtime/proc.go:435",
					"github.com/Shopify/toxiproxy/v2/toxics.(*LatencyToxic).Pipe /m/github.com/Shopify/toxiproxy/v2@v2.12.0/toxics/latency.go:44",
				}})
			},
			summary: []string{"goroutines 10 (baseline 10, +0"},
		}, SpecTimeout(20*time.Second)),
		Entry("goroutines parked on a mutex are named by the code that holds them there, not by sync's frames", leakCase{
			ended: 3, status: check.Fail,
			after: func(a *admin) {
				a.stacks = append(a.stacks, stack{5, []string{
					"runtime.gopark /go/src/runtime/proc.go:435",
					"sync.runtime_SemacquireMutex /go/src/runtime/sema.go:95",
					"internal/sync.(*Mutex).lockSlow /go/src/internal/sync/mutex.go:149",
					"sync.(*Mutex).Lock /go/src/sync/mutex.go:46",
					"example.com/ghosts.(*server).remove /src/ghosts/server.go:77",
					"example.com/ghosts.(*server).Play /src/ghosts/server.go:60",
				}})
			},
			evidence: []string{"+5 goroutines (0 at baseline, 5 after) in ghosts.(*server).remove server.go:77 <- ghosts.(*server).Play server.go:60"},
		}, SpecTimeout(20*time.Second)),
		Entry("200 ended streams and 3 goroutines more: within 2 + 0.1 x 200", leakCase{
			ended: 200, after: func(a *admin) { a.stacks = append(a.stacks, held(3)) }, status: check.Pass,
			summary: []string{"goroutines 13 (baseline 10, +3, allowed +22 = 2 + 0.1 x 200 ended streams)"},
		}, SpecTimeout(20*time.Second)),
		Entry("200 ended streams each leaking a goroutine: fails", leakCase{
			ended: 200, after: func(a *admin) { a.stacks = append(a.stacks, held(200)) }, status: check.Fail,
			evidence: []string{"+200 goroutines (0 at baseline, 200 after) in leaky.(*server).holdSession"},
		}, SpecTimeout(20*time.Second)),
		Entry("failed opens do not widen the tolerance", leakCase{
			ended: 3, failed: 500, after: func(a *admin) { a.stacks = append(a.stacks, held(3)) }, status: check.Fail,
			summary: []string{"3 streams ended (3 opened, 500 failed opens)"},
		}, SpecTimeout(20*time.Second)),
		Entry("an explicit absolute bound alone keeps the old meaning", leakCase{
			params: func(p *check.LeakParams) { p.GoroutinesOverBaselineMax = ptr(20) },
			ended:  3, after: func(a *admin) { a.stacks = append(a.stacks, held(3)) }, status: check.Pass,
			summary: []string{"allowed +20)"},
		}, SpecTimeout(20*time.Second)),
		Entry("an explicit constant and fraction scale together", leakCase{
			params: func(p *check.LeakParams) {
				p.GoroutinesOverBaselineMax, p.GoroutinesPerEndedStreamMax = ptr(0), ptr(0.5)
			},
			ended: 4, after: func(a *admin) { a.stacks = append(a.stacks, held(3)) }, status: check.Fail,
			evidence: []string{"allowed +2 = 0 + 0.5 x 4 ended streams"},
		}, SpecTimeout(20*time.Second)),
		Entry("the heap stays up: fails on the heap, goroutines fine", leakCase{
			ended: 10, after: func(a *admin) { a.heap = 8<<20 + 40<<20 }, status: check.Fail,
			summary:  []string{"heap +40.0 MiB (allowed +32.2 MiB)"},
			evidence: []string{"live heap 48.0 MiB vs baseline 8.0 MiB (+40.0 MiB, allowed +32.2 MiB = 32.0 MiB + 16.0 KiB x 10 ended streams)"},
			absent:   []string{"goroutines"},
		}, SpecTimeout(20*time.Second)),
		Entry("open channelz streams stay up", leakCase{
			ended: 10, after: func(a *admin) { a.streams = 7 }, status: check.Fail,
			evidence: []string{"open streams 7 vs baseline 0 (+7, allowed +2)"},
		}, SpecTimeout(20*time.Second)),
		Entry("the admin endpoint stops answering: not measurable, naming it", leakCase{
			ended: 10, after: func(a *admin) { a.down = true }, status: check.NotMeasurable,
			summary: []string{"answered at the baseline but not after", "goroutines: GET ", "503 Service Unavailable", "heap: "},
		}, SpecTimeout(20*time.Second)),
		Entry("the admin server is gone: not measurable, never a pass", leakCase{
			ended: 10, after: func(a *admin) { a.srv.CloseClientConnections(); a.srv.Listener.Close() }, status: check.NotMeasurable,
			summary: []string{"answered at the baseline but not after", "goroutines: "},
		}, SpecTimeout(20*time.Second)),
		Entry("channelz fails after the baseline: not measurable, naming channelz", leakCase{
			ended: 10, after: func(a *admin) { a.channelErr = errors.New("rpc error: code = Unavailable desc = connection refused") }, status: check.NotMeasurable,
			summary: []string{"channelz: rpc error: code = Unavailable"},
		}, SpecTimeout(20*time.Second)),
		Entry("a proven goroutine leak still fails when channelz stops answering", leakCase{
			ended: 3, after: func(a *admin) { a.stacks = append(a.stacks, held(9)); a.channelErr = errors.New("gone") }, status: check.Fail,
			summary: []string{"goroutines +9", "no longer answering: channelz: gone"},
		}, SpecTimeout(20*time.Second)),
	)

	It("takes goroutines from /metrics when pprof is not served, and says it cannot name stacks", func(ctx SpecContext) {
		a := newAdmin()
		a.set(func(a *admin) { a.pprof = false })
		ck, err := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = 600 * time.Millisecond; return nil })
		Expect(err).NotTo(HaveOccurred())
		Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
		for _, e := range streamsEnded(3, 0) {
			ck.Observe(&e)
		}
		a.set(func(a *admin) { a.stacks = append(a.stacks, held(5)) })
		v := ck.Verdict(ctx, a.env())
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", ContainSubstring("goroutines 15 vs baseline 10"))))
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", ContainSubstring("the count came from /metrics"))))
	}, SpecTimeout(20*time.Second))

	It("passes once the server settles back within the tolerance", func(ctx SpecContext) {
		a := newAdmin()
		ck, err := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = 20 * time.Second; return nil })
		Expect(err).NotTo(HaveOccurred())
		Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
		for _, e := range streamsEnded(5, 0) {
			ck.Observe(&e)
		}
		a.set(func(a *admin) { a.stacks = append(a.stacks, held(100)) })
		t := time.AfterFunc(700*time.Millisecond, func() { a.set(func(a *admin) { a.stacks = idle }) })
		DeferCleanup(t.Stop)
		v := ck.Verdict(ctx, a.env())
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("goroutines 10 (baseline 10"))
	}, SpecTimeout(40*time.Second))

	It("is not measurable when the admin URL does not answer at the baseline, even with channelz", func(ctx SpecContext) {
		a := newAdmin()
		a.srv.Close() // nothing listens at the URL any more
		ck, err := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = 600 * time.Millisecond; return nil })
		Expect(err).NotTo(HaveOccurred())
		Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
		for _, e := range streamsEnded(10, 0) {
			ck.Observe(&e)
		}
		v := ck.Verdict(ctx, a.env())
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(And(ContainSubstring("goroutines could not be counted at the baseline"), ContainSubstring(a.srv.URL)))
	}, SpecTimeout(20*time.Second))

	It("is not measurable without an admin URL, naming the flag", func(ctx SpecContext) {
		env := noAdmin{}
		ck, _ := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = 600 * time.Millisecond; return nil })
		Expect(ck.(check.Starter).Start(ctx, env)).To(Succeed())
		for _, e := range streamsEnded(10, 0) {
			ck.Observe(&e)
		}
		v := ck.Verdict(ctx, env)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("--admin-url"))
	}, SpecTimeout(20*time.Second))

	It("is not measurable when no stream opened", func(ctx SpecContext) {
		a := newAdmin()
		ck, _ := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = 600 * time.Millisecond; return nil })
		Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
		for _, e := range streamsEnded(0, 7) {
			ck.Observe(&e)
		}
		v := ck.Verdict(ctx, a.env())
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("no client stream opened (7 failed opens)"))
	}, SpecTimeout(20*time.Second))

	It("keeps at most a few growing stacks, largest growth first", func(ctx SpecContext) {
		a := newAdmin()
		ck, _ := check.New("leaks", func(into any) error { into.(*check.LeakParams).Settle = 600 * time.Millisecond; return nil })
		Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
		for _, e := range streamsEnded(10, 0) {
			ck.Observe(&e)
		}
		grown := append([]stack{}, idle...)
		for i := range 30 {
			grown = append(grown, stack{i + 1, []string{fmt.Sprintf("example.com/leaky.worker%d /src/leaky/w.go:%d", i, i+1)}})
		}
		a.set(func(a *admin) { a.stacks = grown })
		v := ck.Verdict(ctx, a.env())
		Expect(v.Status).To(Equal(check.Fail))
		var stacks []string
		for _, e := range v.Evidence {
			if e.Scope == "goroutine stack" {
				stacks = append(stacks, e.Detail)
			}
		}
		Expect(stacks).To(HaveLen(5))
		Expect(stacks[0]).To(HavePrefix("+30 goroutines (0 at baseline, 30 after) in leaky.worker29 w.go:30"))
		Expect(stacks[4]).To(HavePrefix("+26 goroutines"))
	}, SpecTimeout(20*time.Second))

	DescribeTable("rejects impossible parameters, naming them",
		func(set func(p *check.LeakParams), want string) {
			_, err := check.New("leaks", func(into any) error { set(into.(*check.LeakParams)); return nil })
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("negative settle", func(p *check.LeakParams) { p.Settle = -time.Second }, "settle must be within"),
		Entry("negative constant", func(p *check.LeakParams) { p.GoroutinesOverBaselineMax = ptr(-1) }, "goroutines_over_baseline_max must not be negative"),
		Entry("negative fraction", func(p *check.LeakParams) { p.GoroutinesPerEndedStreamMax = ptr(-0.1) }, "goroutines_per_ended_stream_max must be within"),
		Entry("NaN fraction", func(p *check.LeakParams) { p.GoroutinesPerEndedStreamMax = ptr(math.NaN()) }, "goroutines_per_ended_stream_max must be within"),
		Entry("negative heap", func(p *check.LeakParams) { p.HeapOverBaselineMaxBytes = ptr(int64(-1)) }, "heap_over_baseline_max_bytes must not be negative"),
		Entry("huge heap per stream", func(p *check.LeakParams) { p.HeapPerEndedStreamMaxBytes = ptr(int64(2 << 30)) }, "heap_per_ended_stream_max_bytes must be within"),
		Entry("negative streams", func(p *check.LeakParams) { p.StreamsOverBaselineMax = ptr(-2) }, "streams_over_baseline_max must not be negative"),
	)

	It("scales the default tolerance with the streams ended", func() {
		var p check.LeakParams
		Expect(p.Tolerance(0)).To(Equal(check.LeakTolerance{Goroutines: 2, HeapBytes: 32 << 20, Sockets: 2, Streams: 2}))
		Expect(p.Tolerance(3).Goroutines).To(Equal(2))
		Expect(p.Tolerance(200).Goroutines).To(Equal(22))
		Expect(p.Tolerance(10_000).HeapBytes).To(Equal(int64(32<<20 + 10_000*16<<10)))
		p.HeapOverBaselineMaxBytes = ptr(int64(64 << 20))
		Expect(p.Tolerance(10_000).HeapBytes).To(Equal(int64(64 << 20)))
	})
})

// noAdmin is a target with no admin URL and no channelz.
type noAdmin struct{}

func (noAdmin) AdminURL() string                                 { return "" }
func (noAdmin) Channelz(context.Context) (int, int, bool, error) { return 0, 0, false, nil }
func (noAdmin) Healthy(context.Context) (bool, error)            { return true, nil }

var _ = Describe("leaks parameters in a scenario file", func() {
	parse := func(params string) (*scenario.Scenario, error) {
		return scenario.Parse("p.yaml", []byte("name: p\nservice: chat\nduration: 1s\nroles:\n  - {name: l, count: 1, behaviour: lurker, rooms: 1}\nchecks:\n  - leaks: "+params+"\n"))
	}

	It("decodes the scaled tolerances, and the checker judges by them", func(ctx SpecContext) {
		s, err := parse("{settle: 600ms, goroutines_over_baseline_max: 0, goroutines_per_ended_stream_max: 0.5, heap_per_ended_stream_max_bytes: 1024}")
		Expect(err).NotTo(HaveOccurred())
		ck, err := s.Checks[0].New()
		Expect(err).NotTo(HaveOccurred())
		a := newAdmin()
		Expect(ck.(check.Starter).Start(ctx, a.env())).To(Succeed())
		for _, e := range streamsEnded(4, 0) {
			ck.Observe(&e)
		}
		a.set(func(a *admin) { a.stacks = append(a.stacks, held(3)) })
		v := ck.Verdict(ctx, a.env())
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", ContainSubstring("allowed +2 = 0 + 0.5 x 4 ended streams"))))
	}, SpecTimeout(20*time.Second))

	It("rejects a misspelt parameter and a bad value, naming the field", func() {
		_, err := parse("{goroutines_per_stream_max: 0.1}")
		Expect(err).To(MatchError(ContainSubstring("goroutines_per_stream_max")))
		_, err = parse("{goroutines_per_ended_stream_max: -1}")
		Expect(err).To(MatchError(ContainSubstring("goroutines_per_ended_stream_max must be within [0, 100]")))
	})
})
