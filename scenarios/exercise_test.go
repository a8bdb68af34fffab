package scenarios_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/broken"
	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// exercise is what one library scenario is built to exercise, and the
// proof that it did: a probe on what the run against the reference server
// did (it must find something: a scenario that never reached the situation
// proves nothing there), and optionally a server of the broken-server
// corpus (harness/broken) with one defect that exactly one check of the
// scenario must catch.
type exercise struct {
	file string
	mode string // modeInProcess or modeSpawn (scenarios_test.go)
	// probe names what the reference run must have exercised and how many
	// times it did (> 0 to pass), from the run's events.
	probe func(t *tally) (what string, n int)
	// defect, when catches is not empty, is the corpus server the scenario
	// must fail: catches fails with evidence, every other check passes.
	defect  broken.ChatDefect
	catches string
}

// exercises are the library scenarios built for one guarantee each (issue
// #12 item 8). The CI table in scenarios_test.go leaves them out: they are
// run against the reference server here, with their probe on top.
var exercises = []exercise{
	{file: "faults/resend-unacked.yaml", mode: modeInProcess, probe: resendsOfStored,
		defect: broken.ResendStoredTwice, catches: "no-duplicates"},
	{file: "chat/resume-gaps.yaml", mode: modeInProcess, probe: resumesWithGaps,
		defect: broken.ResumeSeamOffByOne, catches: "resume-complete"},
	{file: "chat/quiet-tail.yaml", mode: modeInProcess, probe: quietTail,
		defect: broken.DropSubscription, catches: "no-lost-acks"},
	{file: "faults/kill9-restart.yaml", mode: modeSpawn, probe: inFlightAtKill},
}

// exercised reports whether file is one of the exercises.
func exercised(file string) bool {
	for _, x := range exercises {
		if x.file == file {
			return true
		}
	}
	return false
}

// resendsOfStored: acks that said "duplicate", i.e. resends of a message
// the server had already stored (its first ack never reached the sender).
func resendsOfStored(t *tally) (string, int) {
	return "resends of stored messages acked as duplicates", t.dupAcks
}

// resumesWithGaps: resumes whose room had moved on while the member was
// away (head beyond resume_after), i.e. with a missed range to replay.
func resumesWithGaps(t *tally) (string, int) {
	return "resumes with a missed range to replay", t.gapResumes
}

// quietTail: memberships still open at least 2s (no-lost-acks' default
// grace) after the last ack of their room, so that every ack is owed to
// them.
func quietTail(t *tally) (string, int) {
	return "memberships that outlived their room's last ack by more than the 2s grace", t.quietMembers()
}

// inFlightAtKill: sends made before the server was killed whose ack came
// only on a stream opened after it (resent after the restart, and
// acknowledged then: stored once, or stored now).
func inFlightAtKill(t *tally) (string, int) {
	n, dup := 0, 0
	for _, c := range t.crossed {
		for _, k := range t.kills {
			if c.sent < k && k < c.acked {
				n++
				if c.dup {
					dup++
				}
				break
			}
		}
	}
	return fmt.Sprintf("sends in flight at a kill -9 acknowledged after the restart (%d of them as duplicates: stored before the kill)", dup), n
}

// tally is an engine.Tap that counts what a run exercised. Events is
// called from the engine's dispatcher only; mu guards the figures against
// the spec's reads after the run.
type tally struct {
	mu         sync.Mutex
	dupAcks    int
	gapResumes int
	// streams counts each client's streams (Connect events); sends holds
	// each unacknowledged send's time and stream (bounded by the run's
	// sends); crossed the sends acknowledged on a later stream than the one
	// they were first sent on; kills when kill-server fired.
	streams map[int]int
	sends   map[sendKey]sent
	crossed []crossing
	kills   []time.Duration
	// lastAck: per room, when its last ack came; open/ended memberships.
	lastAck map[string]time.Duration
	joined  map[memberOf]time.Duration
	spans   []span
	last    time.Duration
}

type sendKey struct {
	client int
	msg    string
}

type sent struct {
	at     time.Duration
	stream int
}

// crossing is a send acknowledged on a later stream than its first.
type crossing struct {
	sent, acked time.Duration
	dup         bool
}

type memberOf struct {
	client int
	room   string
}

// span is one membership of a room, from its Join to its end.
type span struct {
	room     string
	from, to time.Duration
}

func newTally() *tally {
	return &tally{streams: map[int]int{}, sends: map[sendKey]sent{},
		lastAck: map[string]time.Duration{}, joined: map[memberOf]time.Duration{}}
}

func (t *tally) Begin(time.Time)  {}
func (t *tally) End(engine.Final) {}

func (t *tally) Events(b []event.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range b {
		e := &b[i]
		t.last = max(t.last, e.At)
		k := sendKey{e.Client, e.MsgID}
		switch e.Kind {
		case event.Connect:
			t.streams[e.Client]++
		case event.Send:

			if _, ok := t.sends[k]; e.MsgID != "" && !ok {
				t.sends[k] = sent{at: e.At, stream: t.streams[e.Client]}
			}
		case event.Error:
			delete(t.sends, k)
		case event.Ack:
			if e.Duplicate {
				t.dupAcks++
			}
			if s, ok := t.sends[k]; ok && s.stream != t.streams[e.Client] {
				t.crossed = append(t.crossed, crossing{sent: s.at, acked: e.At, dup: e.Duplicate})
			}
			delete(t.sends, k)
			t.lastAck[e.Scope] = max(t.lastAck[e.Scope], e.At)
		case event.Fault:
			if e.Client == -1 && strings.HasPrefix(e.Detail, "kill-server") {
				t.kills = append(t.kills, e.At)
			}
		case event.Join:
			if e.HasResume && e.Seq > e.ResumeAfter {
				t.gapResumes++
			}
			t.end(memberOf{e.Client, e.Scope}, e.At)
			t.joined[memberOf{e.Client, e.Scope}] = e.At
		case event.Leave:
			t.end(memberOf{e.Client, e.Scope}, e.At)
		}
	}
}

// end closes m's open membership at time at.
func (t *tally) end(m memberOf, at time.Duration) {
	if from, ok := t.joined[m]; ok {
		delete(t.joined, m)
		t.spans = append(t.spans, span{room: m.room, from: from, to: at})
	}
}

// quietMembers counts the memberships (those still open at the end
// included) that began before their room's last ack and ended more than
// 2s after it.
func (t *tally) quietMembers() int {
	n := 0
	for m, from := range t.joined {
		t.spans = append(t.spans, span{room: m.room, from: from, to: t.last})
	}
	clear(t.joined)
	for _, s := range t.spans {
		if last, ok := t.lastAck[s.room]; ok && s.from < last && s.to-last > 2*time.Second {
			n++
		}
	}
	return n
}

// read runs f on t's figures under its lock.
func (t *tally) read(f func(*tally) (string, int)) (string, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return f(t)
}

// runScenario runs s against target with t tapping its events.
func runScenario(ctx context.Context, s *scenario.Scenario, t *tally, opts ...engine.Option) result.Scenario {
	GinkgoHelper()
	opts = append(opts, engine.WithInsecure(), engine.WithLogger(testLog(slog.LevelWarn)), engine.WithTap(t))
	res, err := engine.Run(ctx, s, opts...)
	Expect(err).NotTo(HaveOccurred(), func() string { return verdictTable(res, "") })
	return res
}

// wrongVerdicts lists how res differs from "catches fails with evidence,
// every other check passes".
func wrongVerdicts(res result.Scenario, catches string) []string {
	var out []string
	if res.Failure != "" {
		return []string{"the scenario did not run: " + res.Failure}
	}
	seen := false
	for _, v := range res.Checks {
		switch {
		case v.Name == catches:
			seen = true
			if v.Status != check.Fail || len(v.Evidence) == 0 {
				out = append(out, fmt.Sprintf("%s: want fail with evidence, got %s (%d evidence): %s", v.Name, v.Status, len(v.Evidence), v.Summary))
			}
		case v.Status != check.Pass:
			out = append(out, fmt.Sprintf("%s: want pass, got %s: %s", v.Name, v.Status, v.Summary))
		}
	}
	if !seen {
		out = append(out, "the scenario has no check "+catches)
	}
	return out
}

var _ = DescribeTable("library scenarios exercise what they are built for",
	func(ctx SpecContext, x exercise) {
		scs, err := scenario.Load(x.file)
		Expect(err).NotTo(HaveOccurred())
		Expect(scs).To(HaveLen(1))
		s := scs[0]

		if x.catches != "" {
			By("against the broken server " + x.defect.String() + ": " + x.catches + " fails, every other check passes")
			srv, err := broken.StartChat(x.defect)
			Expect(err).NotTo(HaveOccurred())
			res := func() result.Scenario {
				defer srv.Stop()
				return runScenario(ctx, s, newTally(), engine.WithTarget(srv.Addr()), engine.WithServerEnv(srv.AdminURL()))
			}()
			Expect(wrongVerdicts(res, x.catches)).To(BeEmpty(), func() string { return verdictTable(res, srv.Addr()) })
		}

		By("against the reference server: every check passes, and the run exercised it")
		var opts []engine.Option
		switch x.mode {
		case modeInProcess:
			target, adminURL := startInProcess()
			opts = append(opts, engine.WithTarget(target), engine.WithServerEnv(adminURL))
		case modeSpawn:
			srv := startSpawned(ctx)
			opts = append(opts, engine.WithTarget(srv.Addr()), engine.WithServerEnv("http://"+srv.AdminAddr()), engine.WithFaultEnv(srv))
		default:
			Fail(fmt.Sprintf("%s: unknown mode %q", x.file, x.mode))
		}
		t := newTally()
		res := runScenario(ctx, s, t, opts...)
		table := func() string { return verdictTable(res, "the reference server") }
		Expect(res.Messages.Sent).To(BeNumerically(">", 0), table)
		Expect(res).To(matchers.PassAllChecks(), table)
		what, n := t.read(x.probe)
		GinkgoWriter.Printf("%s: %d %s\n", x.file, n, what)
		Expect(n).To(BeNumerically(">", 0), "%s exercised nothing: 0 %s\n%s", x.file, what, table())
	},
	func(x exercise) string {
		if x.catches == "" {
			return x.file + " (" + x.mode + ")"
		}
		return fmt.Sprintf("%s catches %s with %s (%s)", x.file, x.defect, x.catches, x.mode)
	},
	exerciseEntries(),
)

// exerciseEntries is one table entry per exercise.
func exerciseEntries() []TableEntry {
	out := make([]TableEntry, 0, len(exercises))
	for _, x := range exercises {
		out = append(out, Entry(nil, x, SpecTimeout(scenarioTimeout)))
	}
	return out
}
