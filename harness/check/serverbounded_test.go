package check_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/check"
	ev "github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

// boundedServer is a fake admin endpoint whose /metrics figures and gRPC
// health the spec sets; it counts the /metrics requests, so a spec can
// wait for the checker to have sampled a state (no timing assumptions).
type boundedServer struct {
	srv                   *httptest.Server
	rss, heap, goroutines atomic.Int64
	noRSS                 atomic.Bool
	unhealthy             atomic.Bool
	// streams, when channelz is set, is what Channelz answers (sockets: 1).
	channelz atomic.Bool
	streams  atomic.Int64
	reads    atomic.Int64
}

func newBoundedServer() *boundedServer {
	b := &boundedServer{}
	b.rss.Store(100 << 20)
	b.heap.Store(20 << 20)
	b.goroutines.Store(50)
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines %d\n", b.goroutines.Load())
		fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\n", b.heap.Load())
		if !b.noRSS.Load() {
			fmt.Fprintf(w, "process_resident_memory_bytes %.6e\n", float64(b.rss.Load()))
		}
		b.reads.Add(1)
	}))
	DeferCleanup(b.srv.Close)
	return b
}

// waitReads waits until the checker has read /metrics n more times.
func (b *boundedServer) waitReads(n int64) {
	from := b.reads.Load()
	Eventually(b.reads.Load).WithTimeout(10 * time.Second).WithPolling(10 * time.Millisecond).Should(BeNumerically(">=", from+n))
}

func (b *boundedServer) AdminURL() string { return b.srv.URL }
func (b *boundedServer) Channelz(context.Context) (int, int, bool, error) {
	return 1, int(b.streams.Load()), b.channelz.Load(), nil
}
func (b *boundedServer) Healthy(context.Context) (bool, error) { return !b.unhealthy.Load(), nil }

// boundedNoAdmin is an env without an admin endpoint.
type boundedNoAdmin struct{ boundedServer }

func (*boundedNoAdmin) AdminURL() string { return "" }

// bounded builds a server-bounded checker from YAML parameters, through
// the scenario parser (as a scenario file would).
func bounded(params string) check.Checker {
	src := "name: b\nservice: chat\nduration: 1s\nroles: [{name: honest, count: 1, behaviour: chatter}]\nchecks:\n  - server-bounded: " + params + "\n"
	s, err := scenario.Parse("b.yaml", []byte(src))
	Expect(err).NotTo(HaveOccurred())
	c, err := s.Checks[0].New()
	Expect(err).NotTo(HaveOccurred())
	return c
}

var _ = Describe("server-bounded", func() {
	attack := func(at time.Duration, field string) *ev.Event {
		return &ev.Event{Kind: ev.Attack, At: at, Client: 3, Role: "bomber", Scope: "hpack-bomb", Field: field,
			Detail: "hpack-bomb: 100 frames; server: RST_STREAM FRAME_SIZE_ERROR x99"}
	}

	It("passes a server that stays within its bounds, naming every peak and what the attacks got", func(ctx SpecContext) {
		b := newBoundedServer()
		c := bounded("{every: 50ms}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(attack(0, ev.AttackStart))
		b.rss.Add(10 << 20) // within 64 MiB of the baseline
		b.waitReads(5)
		c.Observe(attack(time.Second, ev.AttackStop))
		v := c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(MatchRegexp(`within bounds at every sample \(\d+ samples every 50ms\): rss peak 110.0 MiB at .* \(baseline 100.0 MiB, \+10.0 MiB\), heap peak 20.0 MiB`))
		Expect(v.Summary).To(ContainSubstring("goroutines peak 50"))
		Expect(v.Summary).To(ContainSubstring("health SERVING at all"))
		Expect(v.Summary).To(ContainSubstring("attacks: hpack-bomb x1, the first: hpack-bomb: 100 frames; server: RST_STREAM FRAME_SIZE_ERROR x99"))
	}, SpecTimeout(30*time.Second))

	It("fails on a peak during the run that is gone by the verdict, naming the peak, when, and the attack", func(ctx SpecContext) {
		b := newBoundedServer()
		c := bounded("{every: 50ms, rss_over_baseline: 64MiB, goroutines_max: 1000}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(attack(0, ev.AttackStart))
		b.waitReads(2)
		b.rss.Store(300 << 20)
		b.goroutines.Store(5000)
		b.waitReads(3)
		Expect(c.(check.Live).Violations()).To(Equal(2), "judged while the run goes on")
		b.rss.Store(100 << 20) // back to baseline before the verdict
		b.goroutines.Store(50)
		b.waitReads(3)
		c.Observe(attack(10*time.Second, ev.AttackStop))
		v := c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(2))
		Expect(v.Summary).To(HavePrefix("over its bounds during the run (rss, goroutines)"))
		Expect(v.Evidence).To(HaveLen(2))
		Expect(v.Evidence[0].Scope).To(Equal("rss"))
		Expect(v.Evidence[0].Detail).To(MatchRegexp(`^rss went over rss_over_baseline \+64.0 MiB over the baseline 100.0 MiB at .*, while hpack-bomb \(role bomber, 1 client\(s\)\) ran; it peaked at 300.0 MiB \(\+200.0 MiB over the baseline 100.0 MiB\) at .*, while hpack-bomb \(role bomber, 1 client\(s\)\) ran$`))
		Expect(v.Evidence[1].Detail).To(ContainSubstring("goroutines went over goroutines_max 1000 at"))
		Expect(v.Evidence[1].Detail).To(ContainSubstring("it peaked at 5000 (+4950 over the baseline 50)"))
	}, SpecTimeout(30*time.Second))

	It("bounds the streams open on the target through channelz when asked to, and is not measurable without channelz then", func(ctx SpecContext) {
		b := newBoundedServer()
		b.channelz.Store(true)
		b.streams.Store(10)
		c := bounded("{every: 50ms, streams_over_baseline: 100}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(attack(0, ev.AttackStart))
		b.waitReads(2)
		b.streams.Store(500) // stream-hold: streams the server keeps for an idle attacker
		b.waitReads(3)
		v := c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence).To(HaveLen(1))
		Expect(v.Evidence[0].Scope).To(Equal("streams"))
		Expect(v.Evidence[0].Detail).To(MatchRegexp(`^streams went over streams_over_baseline \+100 over the baseline 10 at .*hpack-bomb.*it peaked at 500 \(\+490 over the baseline 10\)`))

		nc := newBoundedServer() // no channelz
		c = bounded("{every: 50ms, streams_over_baseline: 100}")
		Expect(c.(check.Starter).Start(ctx, nc)).To(Succeed())
		c.Observe(attack(0, ev.AttackStart))
		nc.waitReads(5)
		v = c.Verdict(ctx, nc)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("streams (channelz streams not read at the baseline: the target serves no channelz)"))

		c = bounded("{every: 50ms}") // no channelz bound: channelz not needed
		Expect(c.(check.Starter).Start(ctx, nc)).To(Succeed())
		c.Observe(attack(0, ev.AttackStart))
		nc.waitReads(5)
		Expect(c.Verdict(ctx, nc).Status).To(Equal(check.Pass))
	}, SpecTimeout(30*time.Second))

	It("fails when health ever leaves SERVING, and says no attack ran when none did", func(ctx SpecContext) {
		b := newBoundedServer()
		c := bounded("{every: 50ms}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(&ev.Event{Kind: ev.Connect, At: time.Millisecond, Client: 0, Role: "honest"})
		b.unhealthy.Store(true)
		b.waitReads(3)
		b.unhealthy.Store(false)
		b.waitReads(2)
		v := c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence).To(HaveLen(1))
		Expect(v.Evidence[0].Scope).To(Equal("health"))
		Expect(v.Evidence[0].Detail).To(MatchRegexp(`^health left SERVING at .* \(not SERVING\); \d+ of \d+ samples not SERVING; no HTTP/2 attack ran in this scenario$`))
	}, SpecTimeout(30*time.Second))

	It("is not measurable without an admin endpoint, or without a bounded figure, never a pass", func(ctx SpecContext) {
		na := &boundedNoAdmin{}
		c := bounded("{every: 50ms}")
		Expect(c.(check.Starter).Start(ctx, na)).To(Succeed())
		c.Observe(&ev.Event{Kind: ev.Connect, At: time.Millisecond})
		time.Sleep(300 * time.Millisecond) // samples that can read nothing
		v := c.Verdict(ctx, na)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("could not sample the server: rss (process_resident_memory_bytes not read at the baseline: no admin URL given"))

		b := newBoundedServer()
		b.noRSS.Store(true)
		c = bounded("{every: 50ms}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(&ev.Event{Kind: ev.Connect, At: time.Millisecond})
		b.waitReads(4)
		v = c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("rss (process_resident_memory_bytes not read at the baseline: " + b.srv.URL + "/metrics has no process_resident_memory_bytes)"))

		// With the rss bound off, the missing figure is not needed.
		c = bounded("{every: 50ms, rss_over_baseline: off}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(&ev.Event{Kind: ev.Connect, At: time.Millisecond})
		b.waitReads(4)
		v = c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
	}, SpecTimeout(30*time.Second))

	It("is not measurable when a figure it bounds stopped being readable during the run", func(ctx SpecContext) {
		b := newBoundedServer()
		c := bounded("{every: 50ms, rss_over_baseline: 64MiB}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(&ev.Event{Kind: ev.Connect, Client: 0}) // the run starts: sampling begins
		b.waitReads(1)
		b.noRSS.Store(true) // the endpoint stops giving the figure, the peak unseen
		b.waitReads(8)
		v := c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(MatchRegexp(`rss \(process_resident_memory_bytes read in only \d+ of \d+ samples, the rest failed`))
	}, SpecTimeout(30*time.Second))

	It("is not measurable with too few samples", func(ctx SpecContext) {
		b := newBoundedServer()
		c := bounded("{every: 10s, min_samples: 3}")
		Expect(c.(check.Starter).Start(ctx, b)).To(Succeed())
		c.Observe(&ev.Event{Kind: ev.Connect, At: time.Millisecond})
		b.waitReads(1)
		v := c.Verdict(ctx, b)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("1 samples during the run, 3 needed (min_samples)"))
	}, SpecTimeout(30*time.Second))

	It("takes sizes as bytes or with units, and names a bad parameter", func() {
		for _, good := range []string{"{rss_over_baseline: 67108864}", "{rss_over_baseline: 64MiB}", `{heap_max: "1.5GiB"}`,
			"{rss_max: 100MB, goroutines_over_baseline: 10}", "{health: false}", "{rss_over_baseline: off}"} {
			Expect(bounded(good)).NotTo(BeNil(), good)
		}
		for src, want := range map[string]string{
			"{rss_over_baseline: 64XB}":      `server-bounded: rss_over_baseline: "64XB": unknown unit "XB"`,
			"{heap_max: 1.5}":                "server-bounded: heap_max: 1.5 is not a whole number of bytes",
			"{every: 1ms}":                   "server-bounded: every must be within [50ms, 10s], got 1ms",
			"{goroutines_over_baseline: -1}": "server-bounded: goroutines_over_baseline must not be negative, got -1",
			"{rss_limit: 1}":                 "unknown field \"rss_limit\"",
		} {
			_, err := scenario.Parse("b.yaml", []byte("name: b\nservice: chat\nduration: 1s\nroles: [{name: h, count: 1, behaviour: chatter}]\nchecks:\n  - server-bounded: "+src+"\n"))
			if err == nil {
				s, _ := scenario.Parse("b.yaml", []byte("name: b\nservice: chat\nduration: 1s\nroles: [{name: h, count: 1, behaviour: chatter}]\nchecks:\n  - server-bounded: "+src+"\n"))
				_, err = s.Checks[0].New()
			}
			Expect(err).To(MatchError(ContainSubstring(want)), src)
		}
	})
})
