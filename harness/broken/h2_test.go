package broken_test

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/broken"
	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/reference"
)

// attackTap keeps a run's Attack events (bounded: an attack reports a
// handful per connection and second).
type attackTap struct {
	mu  sync.Mutex
	evs []event.Event
}

func (t *attackTap) Begin(time.Time)  {}
func (t *attackTap) End(engine.Final) {}
func (t *attackTap) Events(b []event.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range b {
		if e.Kind == event.Attack && len(t.evs) < 20_000 {
			t.evs = append(t.evs, e)
		}
	}
}

// details lists the Detail of the Attack events of attack with field.
func (t *attackTap) details(attack, field string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for _, e := range t.evs {
		if e.Scope == attack && e.Field == field {
			out = append(out, e.Detail)
		}
	}
	return out
}

// h2Scenario is a short chat scenario: ten honest chatters in two rooms,
// then the attack roles (YAML list items). honest is the chatters' params.
func h2Scenario(name, honest, roles, checks string, dur time.Duration) *scenario.Scenario {
	src := fmt.Sprintf(`name: %s
service: chat
seed: 5
duration: %s
ramp: 500ms
settle: 500ms
roles:
  - {name: honest, count: 10, behaviour: chatter, rooms: 2, rate: 10/s, params: {%s}}
%s
checks:
%s
`, name, dur, honest, roles, checks)
	s, err := scenario.Parse(name+".yaml", []byte(src))
	Expect(err).NotTo(HaveOccurred(), "scenario:\n%s", src)
	return s
}

// runH2 runs s against addr with a tap on its Attack events.
func runH2(ctx context.Context, s *scenario.Scenario, addr, admin string) (result.Scenario, *attackTap) {
	tap := &attackTap{}
	t0 := time.Now()
	res, err := engine.Run(ctx, s, engine.WithTarget(addr), engine.WithServerEnv(admin), engine.WithTap(tap),
		engine.WithLogger(slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	Expect(err).NotTo(HaveOccurred(), "running %s against %s: %s", s.Name, addr, describe(res))
	GinkgoWriter.Printf("ran %s against %s in %s\n%s", s.Name, addr, time.Since(t0).Round(time.Millisecond), describe(res))
	return res, tap
}

// h2Checks are the checks of the unprotected runs: fairness over honest
// traffic, server-bounded, status-codes. Resident memory is not judged:
// under the race detector it grows by itself and is never given back (its
// shadow memory), and every server of the suite shares this process; the
// heap in use and goroutines are.
const h2Checks = `  - fairness: {honest: honest, attackers: attacker, p99_ratio_max: 2, min_calm_samples: 50}
  - server-bounded: {every: 100ms, rss_over_baseline: off, heap_over_baseline: %s, goroutines_over_baseline: 2000}
  - status-codes`

// h2Bite is one attack against the unprotected server.
type h2Bite struct {
	attack string
	// role: the attack role's rate and params; honest: the chatters' params.
	role, honest string
	// fail: the check that must fail, and a pattern its evidence must
	// match (naming the attack).
	fail, evidence string
	// alsoMay: a check that may fail too (the attack's consequence, e.g.
	// a server swelling by hundreds of MiB also serves honest clients
	// late); every other check must pass.
	alsoMay string
	// heap is server-bounded's heap_over_baseline (default 32MiB).
	heap string
}

var _ = Describe("HTTP/2 attacks below gRPC (issue #17)", func() {
	BeforeEach(func() {
		// What the previous spec's servers held is garbage now: give it
		// back, so that this spec's baseline (process-wide figures: the
		// servers run in this process) is not inflated by it.
		runtime.GC()
		debug.FreeOSMemory()
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	DescribeTable("bite the unprotected server: the matching check fails with evidence naming the attack, through the real engine over real gRPC",
		func(ctx SpecContext, b h2Bite) {
			role := fmt.Sprintf("  - {name: attacker, count: 2, behaviour: %s, rooms: 2, start: 1500ms, %s}", b.attack, b.role)
			heap := b.heap
			if heap == "" {
				heap = "32MiB"
			}
			s := h2Scenario("h2-"+b.attack+"-unprotected", b.honest, role, fmt.Sprintf(h2Checks, heap), 3500*time.Millisecond)
			srv, err := broken.StartH2Unprotected()
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(srv.Stop)
			res, tap := runH2(ctx, s, srv.Addr(), srv.AdminURL())
			Expect(tap.details(b.attack, event.AttackStart)).To(HaveLen(2), "both attackers started")
			var wrong []string
			for _, v := range res.Checks {
				switch {
				case v.Name == b.fail && v.Status != check.Fail:
					wrong = append(wrong, fmt.Sprintf("%s: want fail, got %s: %s", v.Name, v.Status, v.Summary))
				case v.Name == b.fail && !anyEvidence(v, b.evidence):
					wrong = append(wrong, fmt.Sprintf("%s: failed, but no evidence matches %q: %+v", v.Name, b.evidence, v.Evidence))
				case v.Name != b.fail && v.Name != b.alsoMay && v.Status != check.Pass:
					wrong = append(wrong, fmt.Sprintf("%s: want pass, got %s: %s", v.Name, v.Status, v.Summary))
				}
			}
			Expect(wrong).To(BeEmpty(), "verdicts are in GinkgoWriter's output above")
		},
		Entry("rapid-reset: a handler per stream, none bounded, and a record per frame", h2Bite{attack: "rapid-reset",
			role: "rate: 5000/s", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `(heap|goroutines) went over .* (while|after) rapid-reset \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
		Entry("continuation-flood: the header block is decoded and kept without end", h2Bite{attack: "continuation-flood",
			// The server's own decoding paces this one (under the race
			// detector, a few MiB/s per connection), and the decoding is what
			// bites first: honest traffic waits behind it (x20-30 the calm
			// p99, every run). The heap it keeps may or may not pass 16 MiB
			// within the run (the honest clients' ramp alone, in this shared
			// process, has reached 18 MiB), so server-bounded may fail too.
			role: "rate: 1000/s, params: {frame_bytes: 16384, connections: 3}", honest: "body_bytes: 32", heap: "16MiB",
			fail: "fairness", evidence: `honest (delivery|send-to-ack) p99 under attack \(continuation-flood\)`, alsoMay: "server-bounded"}, SpecTimeout(time.Minute)),
		Entry("ping-flood: no too_many_pings, and a record per PING", h2Bite{attack: "ping-flood",
			role: "rate: 10000/s", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `heap went over .* (while|after) ping-flood \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
		Entry("settings-flood: a record per SETTINGS", h2Bite{attack: "settings-flood",
			role: "rate: 10000/s", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `heap went over .* (while|after) settings-flood \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
		Entry("empty-frames: a record per empty DATA frame", h2Bite{attack: "empty-frames",
			role: "rate: 10000/s", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `heap went over .* (while|after) empty-frames \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
		Entry("window-update-flood: a record per WINDOW_UPDATE", h2Bite{attack: "window-update-flood",
			role: "rate: 10000/s", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `heap went over .* (while|after) window-update-flood \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
		Entry("zero-window: a broadcast blocks on the member that grants no window, and its room stalls", h2Bite{attack: "zero-window",
			role: "rate: 100/s, params: {streams: 4}", honest: "body_bytes: 4096",
			// What the stalled room holds meanwhile may also go over the
			// heap bound: the attack's consequence too.
			fail: "fairness", evidence: `honest (delivery|send-to-ack) p99 under attack \(zero-window\)|starved`, alsoMay: "server-bounded"}, SpecTimeout(time.Minute)),
		Entry("stream-hold: no stream limit, a handler and its goroutines per held stream", h2Bite{attack: "stream-hold",
			role: "rate: 2000/s, params: {streams: 1000}", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `goroutines went over .* (while|after) stream-hold \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
		Entry("hpack-bomb: every header block decoded to ~16 MiB of fields and kept by its stream", h2Bite{attack: "hpack-bomb",
			role: "rate: 100/s, params: {streams: 40}", honest: "body_bytes: 32",
			fail: "server-bounded", evidence: `heap went over .* (while|after) hpack-bomb \(role attacker`, alsoMay: "fairness"}, SpecTimeout(time.Minute)),
	)

	It("the reference passes every attack, one after another beside honest chatters, and its answer to each shows in the events", func(ctx SpecContext) {
		attacks := []struct{ name, extra string }{
			{"rapid-reset", "rate: 4000/s"},
			{"continuation-flood", "rate: 2000/s"},
			{"ping-flood", "rate: 5000/s"},
			{"settings-flood", "rate: 20000/s"},
			{"empty-frames", "rate: 5000/s"},
			{"window-update-flood", "rate: 20000/s"},
			{"zero-window", "rate: 100/s, params: {streams: 20}"},
			{"stream-hold", "rate: 1000/s, params: {exceed: true, streams: 120}"},
			{"hpack-bomb", "rate: 100/s, params: {streams: 60}"},
		}
		var roles []string
		// Each attack has its window; its one client starts within the
		// scenario's 500ms ramp after the window opens.
		const start, window = 2000 * time.Millisecond, 1000 * time.Millisecond
		for i, a := range attacks {
			at := start + time.Duration(i)*window
			roles = append(roles, fmt.Sprintf("  - {name: a-%s, count: 1, behaviour: %s, rooms: 2, start: %s, stop: %s, %s}",
				a.name, a.name, at, at+window, a.extra))
		}
		dur := start + time.Duration(len(attacks))*window + 1500*time.Millisecond
		// The p99 ratio is loose here: under the race detector on two
		// cores, the attackers, the honest clients and the server share
		// the CPU, and a loaded CI machine measured 16-19x (dos/h2-*.yaml
		// hold the reference to 2x in a real run).
		checks := `  - fairness: {honest: honest, attackers: a-rapid-reset, p99_ratio_max: 50, min_calm_samples: 50}
  - server-bounded: {every: 100ms, rss_over_baseline: off}
  - status-codes
  - leaks: {settle: 15s}`
		s := h2Scenario("h2-all-reference", "body_bytes: 2048", strings.Join(roles, "\n"), checks, dur)
		sctx, cancel := context.WithCancel(context.Background())
		// The flood guard's budgets are a fifth of the defaults here, so
		// that its answer comes within each one-second window even when a
		// loaded machine reads the attackers' frames slowly; the defaults
		// are exercised by dos/h2-*.yaml.
		srv, err := reference.StartWith(sctx, slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError})),
			func(c *reference.Config) {
				c.Options.H2Limits = reference.H2Limits{ControlFrameRate: 200, ControlFrameBurst: 1000, ResetRate: 40, ResetBurst: 200}
			})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			cancel()
			_ = srv.Wait()
		})
		res, tap := runH2(ctx, s, srv.Addr(), "http://"+srv.AdminAddr())
		for _, v := range res.Checks {
			Expect(v.Status).To(Equal(check.Pass), "%s: %s", v.Name, v.Summary)
		}
		answers := map[string]string{
			"rapid-reset":         `GOAWAY ENHANCE_YOUR_CALM "bidikit: HTTP/2 flood: rst-stream"`,
			"continuation-flood":  `the server closed the connection after \d+ frames`,
			"ping-flood":          `GOAWAY ENHANCE_YOUR_CALM "too_many_pings"`,
			"settings-flood":      `GOAWAY ENHANCE_YOUR_CALM "bidikit: HTTP/2 flood: control-frames"`,
			"empty-frames":        `GOAWAY ENHANCE_YOUR_CALM "bidikit: HTTP/2 flood: empty-frames"`,
			"window-update-flood": `GOAWAY ENHANCE_YOUR_CALM "bidikit: HTTP/2 flood: control-frames"`,
			"zero-window":         `GOAWAY ENHANCE_YOUR_CALM "bidikit: HTTP/2 flood: zero-window"`,
			"stream-hold":         `RST_STREAM REFUSED_STREAM x20`,
			"hpack-bomb":          `RST_STREAM FRAME_SIZE_ERROR x\d+`,
		}
		var missing []string
		for name, want := range answers {
			var got []string
			for _, f := range []string{"goaway", "closed", event.AttackStop} {
				got = append(got, tap.details(name, f)...)
			}
			if !slices.ContainsFunc(got, regexp.MustCompile(want).MatchString) {
				missing = append(missing, fmt.Sprintf("%s: no event matches %q: %q", name, want, got))
			}
		}
		Expect(missing).To(BeEmpty(), "the reference's answer to each attack")
	}, SpecTimeout(2*time.Minute))
})

// anyEvidence reports whether some evidence of v matches pattern.
func anyEvidence(v check.Verdict, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, e := range v.Evidence {
		if re.MatchString(e.Detail) {
			return true
		}
	}
	return false
}
