package shard_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
)

// seen records what the "shard-test-recorder" checker observed, in order.
var seen struct {
	sync.Mutex
	events []event.Event
}

func init() {
	check.Register("shard-test-recorder", func(decode func(any) error) (check.Checker, error) {
		var p struct{}
		if err := decode(&p); err != nil {
			return nil, err
		}
		seen.Lock()
		seen.events = nil
		seen.Unlock()
		return recorder{}, nil
	})
}

type recorder struct{}

func (recorder) Observe(e *event.Event) {
	seen.Lock()
	seen.events = append(seen.events, *e)
	seen.Unlock()
}

func (recorder) Verdict(context.Context, check.Env) check.Verdict {
	return check.Verdict{Status: check.Pass, Summary: "recorded"}
}

const twoRoles = `name: synthetic
service: chat
seed: 5
duration: 2s
settle: 0s
roles:
  - name: talker
    count: 3
    behaviour: chatter
  - name: lurker
    count: 2
    behaviour: lurker
checks:
  - shard-test-recorder
  - status-codes
  - leaks: { settle: 1s }
`

// rawShard is one synthetic shard's content.
type rawShard struct {
	yaml     string
	seed     int64
	index    int
	count    int
	start    time.Time
	events   []event.Event
	checks   []check.Verdict
	health   *engine.Health
	failure  string
	noFinal  bool // the run failed before its verdicts
	mutHists func(*metrics.Histograms)
}

// write writes rs to dir/name through the package's Writer, with histograms
// from a Collector fed the same events, as the engine does.
func (rs rawShard) write(dir, name string) string {
	s, err := scenario.Parse(filepath.Join(dir, "scenario.yaml"), []byte(rs.yaml))
	Expect(err).NotTo(HaveOccurred())
	if rs.seed != 0 {
		s.Seed = rs.seed
	}
	if rs.count == 0 {
		rs.count = 1
	}
	path := filepath.Join(dir, name)
	w, err := shard.Create(path)
	Expect(err).NotTo(HaveOccurred())
	sec := w.Section(shard.HeaderFor(s, "127.0.0.1:1", rs.index, rs.count))
	if rs.start.IsZero() {
		rs.start = time.Unix(1_700_000_000, 0)
	}
	sec.Begin(rs.start)
	plan := scenario.NewPlan(s)
	roles := make([]metrics.RoleInfo, len(s.Roles))
	for i, r := range s.Roles {
		roles[i] = metrics.RoleInfo{Name: r.Name, Behaviour: r.Behaviour, Clients: r.Count}
	}
	roleOf := make([]int, len(plan.Clients))
	for i, c := range plan.Clients {
		roleOf[i] = c.RoleIndex
	}
	col := metrics.New(roles, roleOf)
	for i := 0; i < len(rs.events); i += 2 { // batches of two
		b := rs.events[i:min(i+2, len(rs.events))]
		for j := range b {
			col.Observe(&b[j])
		}
		sec.Events(b)
	}
	res := result.Scenario{Name: s.Name, File: s.File, Service: s.Service, Seed: s.Seed, Checks: rs.checks,
		Errors: col.ErrorsByCode(), DurationS: 2, Failure: rs.failure, Passed: rs.failure == ""}
	res.Errors["harness:sender-behind"] = 1 // as the engine adds it (AddError)
	if !rs.noFinal {
		h := col.Export()
		if rs.mutHists != nil {
			rs.mutHists(&h)
		}
		sec.End(engine.Final{Histograms: h, Health: rs.health})
	}
	Expect(sec.Close(res)).To(Succeed())
	Expect(w.Close()).To(Succeed())
	return path
}

func passes(n int) []check.Verdict {
	out := make([]check.Verdict, n)
	for i := range out {
		out[i] = check.Verdict{Status: check.Pass, Summary: "fine"}
	}
	return out
}

func deliver(client int, role string, at, lat time.Duration) event.Event {
	return event.Event{Kind: event.Deliver, Client: client, Role: role, At: at, Latency: lat, Scope: "room-0", Seq: 1}
}

var _ = Describe("raw files", func() {
	It("round-trip sections, events and trailers", func() {
		var buf bytes.Buffer
		w := shard.NewWriter(&buf, "mem")
		for k, name := range []string{"a", "b"} {
			sec := w.Section(shard.Header{Name: name, Seed: int64(k), Index: 1, Count: 2, Scenario: []byte("yaml")})
			sec.Begin(time.Unix(100, 0))
			sec.Events([]event.Event{{Kind: event.Send, Client: 3, MsgID: "m1"}, {Kind: event.Ack, Client: 3, Seq: 7, Code: codes.OK}})
			sec.Events([]event.Event{{Kind: event.Deliver, Client: 4, Latency: time.Millisecond, Text: name}})
			sec.End(engine.Final{Health: &engine.Health{OK: true}})
			Expect(sec.Close(result.Scenario{Name: name, DurationS: 1.5})).To(Succeed())
		}
		Expect(w.Close()).To(Succeed())

		r, err := shard.NewReader(&buf, "mem")
		Expect(err).NotTo(HaveOccurred())
		for _, name := range []string{"a", "b"} {
			h, err := r.Next()
			Expect(err).NotTo(HaveOccurred())
			Expect(h.Name).To(Equal(name))
			Expect(h.Label()).To(Equal("2/2"))
			Expect(h.Format).To(Equal(shard.Format))
			Expect(h.StartedAt.Equal(time.Unix(100, 0))).To(BeTrue())
			var got []event.Event
			for {
				e, err := r.Event()
				if err == io.EOF {
					break
				}
				Expect(err).NotTo(HaveOccurred())
				got = append(got, *e)
			}
			Expect(got).To(HaveLen(3))
			Expect(got[1].Seq).To(BeEquivalentTo(7))
			Expect(got[2].Text).To(Equal(name))
			Expect(r.Trailer().Events).To(BeEquivalentTo(3))
			Expect(r.Trailer().Result.DurationS).To(Equal(1.5))
			Expect(r.Trailer().Health).To(Equal(&engine.Health{OK: true}))
		}
		_, err = r.Next()
		Expect(err).To(Equal(io.EOF))
	})

	It("reports a truncated file as truncated, naming it", func() {
		var buf bytes.Buffer
		w := shard.NewWriter(&buf, "mem")
		sec := w.Section(shard.Header{Name: "cut", Index: 0, Count: 1})
		sec.Begin(time.Now())
		sec.Events([]event.Event{{Kind: event.Send}})
		// No Close: the shard died. Flush what was written.
		Expect(w.Close()).To(MatchError(ContainSubstring("never closed")))
		r, err := shard.NewReader(&buf, "cut.raw")
		Expect(err).NotTo(HaveOccurred())
		_, err = r.Next()
		Expect(err).NotTo(HaveOccurred())
		_, err = r.Event()
		Expect(err).NotTo(HaveOccurred())
		_, err = r.Event()
		Expect(err).To(MatchError(And(ContainSubstring("cut.raw"), ContainSubstring("truncated"))))
	})

	It("refuses a file that is not raw results", func() {
		_, err := shard.NewReader(bytes.NewReader([]byte("name: x\n")), "x.yaml")
		Expect(err).To(MatchError(ContainSubstring("x.yaml is not a bidikit raw results file")))
	})
})

var _ = Describe("Merge", func() {
	var dir string
	BeforeEach(func() { dir = GinkgoT().TempDir() })

	It("counts harness errors once: those the replay recounts from events are not added again from the shards' results", func(ctx SpecContext) {
		unread := func(client int, at time.Duration) event.Event {
			return event.Event{Kind: event.Unread, Client: client, Role: "talker", At: at, Field: event.UnreadUnmatched}
		}
		t0 := time.Unix(1_700_000_000, 0)
		a := rawShard{yaml: twoRoles, index: 0, count: 2, start: t0, checks: passes(3), health: &engine.Health{OK: true},
			events: []event.Event{unread(0, 10*time.Millisecond), unread(0, 20*time.Millisecond)}}
		b := rawShard{yaml: twoRoles, index: 1, count: 2, start: t0, checks: passes(3), health: &engine.Health{OK: true},
			events: []event.Event{unread(1, 10*time.Millisecond)}}
		ms, err := shard.Merge(ctx, a.write(dir, "a.raw"), b.write(dir, "b.raw"))
		Expect(err).NotTo(HaveOccurred())
		Expect(ms).To(HaveLen(1))
		Expect(ms[0].Result.Errors).To(Equal(map[string]int{"harness:unread-no-rule": 3, "harness:sender-behind": 2}))
	})

	It("interleaves the shards' events by wall-clock time, keeping each shard's order", func(ctx SpecContext) {
		t0 := time.Unix(1_700_000_000, 0)
		a := rawShard{yaml: twoRoles, index: 0, count: 2, start: t0, checks: passes(3), health: &engine.Health{OK: true},
			events: []event.Event{
				deliver(0, "talker", 10*time.Millisecond, 3*time.Millisecond),
				deliver(0, "talker", 30*time.Millisecond, 5*time.Millisecond),
				// Out of time order within the shard: stays where it is.
				deliver(3, "lurker", 20*time.Millisecond, 7*time.Millisecond),
				deliver(3, "lurker", 50*time.Millisecond, 9*time.Millisecond),
			}}
		// Shard 2 started 15ms after shard 1.
		b := rawShard{yaml: twoRoles, index: 1, count: 2, start: t0.Add(15 * time.Millisecond), checks: passes(3), health: &engine.Health{OK: true},
			events: []event.Event{
				deliver(1, "talker", 0, 11*time.Millisecond),
				deliver(4, "lurker", 20*time.Millisecond, 13*time.Millisecond),
			}}
		pa, pb := a.write(dir, "a.raw"), b.write(dir, "b.raw")
		ms, err := shard.Merge(ctx, pb, pa) // any order
		Expect(err).NotTo(HaveOccurred())
		Expect(ms).To(HaveLen(1))
		seen.Lock()
		got := seen.events
		seen.Unlock()
		type ca struct {
			client int
			at     time.Duration
		}
		var order []ca
		for _, e := range got {
			order = append(order, ca{e.Client, e.At})
		}
		ms15 := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
		Expect(order).To(Equal([]ca{
			{0, ms15(10)}, {1, ms15(15)}, {0, ms15(30)}, {3, ms15(20)}, {4, ms15(35)}, {3, ms15(50)},
		}))
		m := ms[0]
		Expect(m.Events).To(BeEquivalentTo(6))
		Expect(m.Result.Messages.Delivered).To(BeEquivalentTo(6))
		Expect(m.Result.Clients).To(Equal(5))
		Expect(m.Result.Errors).To(HaveKeyWithValue("harness:sender-behind", 2))
		Expect(m.Result.LatencyMS.Count).To(BeEquivalentTo(6))
		Expect(m.Result.LatencyMS.Max).To(BeNumerically("~", 13, 0.1))
		Expect(m.Header.StartedAt.Equal(t0)).To(BeTrue())
		// No stream ended in these shards: status-codes saw nothing to
		// judge, which is not measurable (never a pass); the rest passed.
		for _, v := range m.Result.Checks {
			if v.Name == "status-codes" {
				Expect(v.Status).To(Equal(check.NotMeasurable), "%+v", v)
				Expect(v.Summary).To(ContainSubstring("no stream ended"))
				continue
			}
			Expect(v.Status).To(Equal(check.Pass), "%+v", v)
		}
		Expect(m.Result.Passed).To(BeFalse())
	}, SpecTimeout(10*time.Second))

	It("keeps each shard's verdict of checks it cannot re-run (leaks): the worst wins", func(ctx SpecContext) {
		ok := passes(3)
		bad := passes(3)
		bad[2] = check.Verdict{Name: "leaks", Status: check.Fail, Violations: 2, Summary: "goroutines leaked",
			Evidence: []check.Evidence{{Detail: "goroutines 180 over a baseline of 40"}}}
		pa := rawShard{yaml: twoRoles, index: 0, count: 2, checks: ok, health: &engine.Health{OK: true}}.write(dir, "a.raw")
		pb := rawShard{yaml: twoRoles, index: 1, count: 2, checks: bad, health: &engine.Health{OK: true}}.write(dir, "b.raw")
		ms, err := shard.Merge(ctx, pa, pb)
		Expect(err).NotTo(HaveOccurred())
		v := ms[0].Result.Checks[2]
		Expect(v.Name).To(Equal("leaks"))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Violations).To(Equal(2))
		Expect(v.Evidence).To(HaveLen(1))
		Expect(v.Evidence[0].Detail).To(Equal("shard 2/2: goroutines 180 over a baseline of 40"))
		Expect(v.Summary).To(And(ContainSubstring("shard 1/2: fine"), ContainSubstring("shard 2/2: goroutines leaked")))
		Expect(ms[0].Result.Passed).To(BeFalse())
	}, SpecTimeout(10*time.Second))

	It("answers health questions from what the shards recorded", func(ctx SpecContext) {
		pa := rawShard{yaml: twoRoles, index: 0, count: 2, checks: passes(3), health: &engine.Health{OK: true}}.write(dir, "a.raw")
		pb := rawShard{yaml: twoRoles, index: 1, count: 2, checks: passes(3), health: &engine.Health{OK: false, Err: "NOT_SERVING"}}.write(dir, "b.raw")
		ms, err := shard.Merge(ctx, pa, pb)
		Expect(err).NotTo(HaveOccurred())
		v := ms[0].Result.Checks[1]
		Expect(v.Name).To(Equal("status-codes"))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence).NotTo(BeEmpty())
		Expect(v.Evidence[0].Detail).To(ContainSubstring("shard 2/2 saw the target unhealthy: NOT_SERVING"))
	}, SpecTimeout(10*time.Second))

	It("carries a shard's failure into the merged result", func(ctx SpecContext) {
		pa := rawShard{yaml: twoRoles, index: 0, count: 2, checks: passes(3), health: &engine.Health{OK: true}}.write(dir, "a.raw")
		pb := rawShard{yaml: twoRoles, index: 1, count: 2, failure: "target unreachable", noFinal: true}.write(dir, "b.raw")
		ms, err := shard.Merge(ctx, pa, pb)
		Expect(err).NotTo(HaveOccurred())
		Expect(ms[0].Result.Failure).To(Equal("shard 2/2: target unreachable"))
		Expect(ms[0].Result.Passed).To(BeFalse())
		Expect(ms[0].Result.Checks[2].Status).To(Equal(check.NotMeasurable))
		Expect(shard.Report(ms).Passed).To(BeFalse())
	}, SpecTimeout(10*time.Second))

	It("refuses histograms that disagree with the events", func(ctx SpecContext) {
		pa := rawShard{yaml: twoRoles, index: 0, count: 1, checks: passes(3),
			events: []event.Event{deliver(0, "talker", 0, time.Millisecond)},
			mutHists: func(h *metrics.Histograms) {
				x := metrics.NewHistogram()
				_ = x.RecordValue(5)
				_ = x.RecordValue(6)
				h.Overall = x.Export()
			}}.write(dir, "a.raw")
		_, err := shard.Merge(ctx, pa)
		Expect(err).To(MatchError(ContainSubstring("events carry 1 latency samples, histograms 2")))
	}, SpecTimeout(10*time.Second))

	other := `name: other
service: chat
duration: 2s
roles:
  - name: talker
    count: 2
    behaviour: chatter
checks: []
`
	DescribeTable("refuses files that are not the shards of one run",
		func(ctx SpecContext, shards []rawShard, msg []string) {
			var paths []string
			for i, rs := range shards {
				paths = append(paths, rs.write(dir, "s"+string(rune('a'+i))+".raw"))
			}
			_, err := shard.Merge(ctx, paths...)
			Expect(err).To(HaveOccurred())
			for _, m := range msg {
				Expect(err.Error()).To(ContainSubstring(m))
			}
		},
		Entry("a missing shard",
			[]rawShard{{yaml: twoRoles, index: 0, count: 3}, {yaml: twoRoles, index: 2, count: 3}},
			[]string{"missing shard 2/3", "got 2 of 3"}, SpecTimeout(10*time.Second)),
		Entry("a shard given twice",
			[]rawShard{{yaml: twoRoles, index: 0, count: 2}, {yaml: twoRoles, index: 0, count: 2}},
			[]string{"shard 1/2 given twice", "sa.raw", "sb.raw"}, SpecTimeout(10*time.Second)),
		Entry("different shard counts",
			[]rawShard{{yaml: twoRoles, index: 0, count: 2}, {yaml: twoRoles, index: 1, count: 3}},
			[]string{"different shard counts", "shard 2/3 (", "sb.raw"}, SpecTimeout(10*time.Second)),
		Entry("different seeds",
			[]rawShard{{yaml: twoRoles, index: 0, count: 2}, {yaml: twoRoles, seed: 9, index: 1, count: 2}},
			[]string{"seed 5", "seed 9", "same seed"}, SpecTimeout(10*time.Second)),
		Entry("different scenarios",
			[]rawShard{{yaml: twoRoles, index: 0, count: 2}, {yaml: other, index: 1, count: 2}},
			[]string{`"synthetic"`, `"other"`, "same scenario"}, SpecTimeout(10*time.Second)),
	)

	It("refuses shards that ran different numbers of scenarios", func(ctx SpecContext) {
		a := rawShard{yaml: twoRoles, index: 0, count: 2}.write(dir, "a.raw")
		// b: two sections.
		s, err := scenario.Parse("scenario.yaml", []byte(twoRoles))
		Expect(err).NotTo(HaveOccurred())
		b := filepath.Join(dir, "b.raw")
		w, err := shard.Create(b)
		Expect(err).NotTo(HaveOccurred())
		for range 2 {
			sec := w.Section(shard.HeaderFor(s, "x", 1, 2))
			Expect(sec.Close(result.Scenario{Name: s.Name})).To(Succeed())
		}
		Expect(w.Close()).To(Succeed())
		_, err = shard.Merge(ctx, a, b)
		Expect(err).To(MatchError(ContainSubstring("different numbers of scenarios")))
	}, SpecTimeout(10*time.Second))

	It("names a file that cannot be read", func(ctx SpecContext) {
		_, err := shard.Merge(ctx, filepath.Join(dir, "nope.raw"))
		Expect(err).To(MatchError(ContainSubstring("nope.raw")))
		Expect(os.WriteFile(filepath.Join(dir, "junk.raw"), []byte("junk"), 0o644)).To(Succeed())
		_, err = shard.Merge(ctx, filepath.Join(dir, "junk.raw"))
		Expect(err).To(MatchError(ContainSubstring("junk.raw is not a bidikit raw results file")))
	})
})
