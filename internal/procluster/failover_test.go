package procluster_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/procluster"
)

// runFor is how long each scenario runs: the kill comes 3-4 s in, stream
// leaders are elected again 4-9 s after it (nats-server's Raft timeouts),
// and every room, document and match must be served again before the end.
const runFor = "17s"

// failoverChat: chatters, lurkers and resumers over three rooms, the victim
// killed at %[2]s.
const failoverChat = `name: failover-chat
service: chat
seed: %[1]d
duration: ` + runFor + `
ramp: 500ms
settle: 1s
roles:
  - {name: chatter, count: 9, behaviour: chatter, rooms: 3, rate: 8/s, params: {rooms_per_client: 2}}
  - {name: lurker, count: 3, behaviour: lurker, rooms: 3, params: {rooms_per_client: 3}}
  - {name: resumer, count: 3, behaviour: resumer, rooms: 3, rate: 4/s, params: {rooms_per_client: 2, reconnect_every: 2s}}
faults:
  - {fault: kill-server, at: %[2]s}
checks: [total-order, delivery-order, no-gaps, no-duplicates, no-lost-acks, sender-fifo, realtime-order, resume-complete, status-codes]
`

// failoverCollab: editors of two documents, through the same kill.
const failoverCollab = `name: failover-collab
service: collab
seed: %[1]d
duration: ` + runFor + `
ramp: 500ms
settle: 2s
roles:
  - {name: editor, count: 6, behaviour: editor, documents: 2, rate: 4/s}
checks: [convergence, no-gaps, no-duplicates, delivery-order, status-codes]
`

// failoverGame: players of two matches, through the same kill. Its target
// list starts with the victim, and its host (client 0, alone in its role)
// joins match-0 there two seconds before anyone else: the victim owns
// match-0 (unless the host's first connection failed over elsewhere), so the
// kill hands match-0 over to another member.
//
// game-invariants judges by the rules the server announces (4 inputs per
// tick): while the owner is dead a relay's players keep sending, and the
// new owner reports the backlog it could not process as dropped.
const failoverGame = `name: failover-game
service: game
seed: %[1]d
duration: ` + runFor + `
ramp: 500ms
settle: 1s
roles:
  - {name: host, count: 1, behaviour: player, matches: 1, rate: 10/s}
  - {name: player, count: 5, behaviour: player, matches: 2, rate: 10/s, start: 2s}
checks:
  - game-invariants
  - status-codes
`

var _ = Describe("three `bidikit serve` processes in one JetStream cluster, one killed with kill -9 mid-run", func() {
	DescribeTable("chat rooms, collab documents and game matches keep every ordering and loss check through the failover",
		func(ctx SpecContext, seed int, killAt time.Duration, victim int) {
			logs := &lines{}
			// Debug logs say which member owns a match ("shared match node
			// created ... owner=true").
			c, err := procluster.Start(ctx, procluster.Options{Binary: bin, Dir: GinkgoT().TempDir(),
				Output: io.MultiWriter(GinkgoWriter, logs), Args: []string{"--log-level", "debug"}})
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(func() { Expect(c.Stop()).To(Succeed()) })
			addrs := c.Addrs()
			victimFirst := append([]string{addrs[victim]}, append(append([]string(nil), addrs[:victim]...), addrs[victim+1:]...)...)
			k := c.Killer(victim)

			runs := []struct {
				yaml    string
				targets []string
			}{{failoverChat, addrs}, {failoverCollab, addrs}, {failoverGame, victimFirst}}
			res := make([]result.Scenario, len(runs))
			taps := make([]*tap, len(runs))
			errs := make([]error, len(runs))
			log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
			var wg sync.WaitGroup
			for i, r := range runs {
				s, err := scenario.Parse(fmt.Sprintf("failover-%d.yaml", i), []byte(fmt.Sprintf(r.yaml, seed, killAt)))
				Expect(err).NotTo(HaveOccurred())
				taps[i] = &tap{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					res[i], errs[i] = engine.Run(ctx, s, engine.WithTargets(r.targets...), engine.WithFaultEnv(k),
						engine.WithTap(taps[i]), engine.WithLogger(log), engine.WithDialTimeout(10*time.Second),
						// A stream half-closed during the election ends once its
						// commit in flight is answered, which may take JetStream
						// longer than the default 5s grace.
						engine.WithStopGrace(15*time.Second))
				}()
			}
			wg.Wait()
			Expect(k.Killed()).To(BeClosed(), "the kill-server fault never fired")
			var failed []string
			for i := range runs {
				Expect(errs[i]).NotTo(HaveOccurred(), describe(res[i]))
				Expect(res[i].Checks).NotTo(BeEmpty())
				if !res[i].Passed {
					failed = append(failed, describe(res[i]))
				}
			}
			Expect(failed).To(BeEmpty())
			end, err := time.ParseDuration(runFor) // the clients' end
			Expect(err).NotTo(HaveOccurred())

			// The kill came while messages were sent and acknowledged, and
			// every room, document and match was served again before the end.
			chat, collab, game := taps[0].all(), taps[1].all(), taps[2].all()
			kill := faultAt(chat, "kill-server")
			Expect(count(chat, event.Send, kill-250*time.Millisecond, kill)).To(BeNumerically(">", 0), "no chat message sent in the 250ms before the kill")
			Expect(count(chat, event.Ack, kill-250*time.Millisecond, kill)).To(BeNumerically(">", 0), "no chat message acknowledged in the 250ms before the kill")
			late := end - 2*time.Second
			Expect(scopes(chat, event.Ack, late, end)).To(ConsistOf("room-0", "room-1", "room-2"), "rooms with messages acknowledged in the last 2s")
			// A document's editors ack far fewer ops than a room's chatters,
			// and a busy CI machine slows their catch-up after the election:
			// the last 5s (the kill was 12s before the end) still prove it.
			Expect(scopes(collab, event.Ack, end-5*time.Second, end)).To(HaveLen(2), "documents with operations acknowledged in the last 5s")
			Expect(scopes(game, event.Tick, late, end)).To(HaveLen(2), "matches ticking in the last 2s")

			// Clients of the victim went on elsewhere; when the victim owned
			// match-0, another member took it over (a relay that noticed the
			// silence, or a member a player joined after the lease expired).
			Expect(movedOff(chat, addrs[victim], kill)).To(BeNumerically(">", 0), "chat clients that reconnected elsewhere after the kill")
			owners := logs.containing("game: shared match node created", "match=match-0", "owner=true")
			Expect(owners).NotTo(BeEmpty(), "no member says it owned match-0")
			handOver := "match-0 was owned by another member: no hand-over in this run"
			if strings.HasPrefix(owners[0], c.Name(victim)+": ") {
				Expect(append(logs.containing("game: took over match from a silent owner", "match=match-0"), owners[1:]...)).NotTo(BeEmpty(),
					"nobody took match-0 over from the killed owner %s", c.Name(victim))
				handOver = "match-0 handed over from the killed owner"
			}

			acked, unacked := inFlight(chat, kill)
			AddReportEntry(fmt.Sprintf("kill -9 of %s at %v", c.Name(victim), kill.Round(time.Millisecond)),
				fmt.Sprintf("chat: %d messages unacknowledged at the kill, %d of them acknowledged later; last room back %v after the kill; %d error events; %s",
					unacked, acked, recovery(chat, kill).Round(100*time.Millisecond), count(chat, event.Error, kill, end), handOver))
		},
		Entry("seed 11, n1 at 3s", 11, 3*time.Second, 0, SpecTimeout(150*time.Second)),
		Entry("seed 12, n2 at 3.5s", 12, 3500*time.Millisecond, 1, SpecTimeout(150*time.Second)),
		Entry("seed 13, n3 at 4s", 13, 4*time.Second, 2, SpecTimeout(150*time.Second)),
		Entry("seed 14, n1 at 3.2s", 14, 3200*time.Millisecond, 0, SpecTimeout(150*time.Second)),
		Entry("seed 15, n2 at 3.7s", 15, 3700*time.Millisecond, 1, SpecTimeout(150*time.Second)),
	)
})

// tap keeps a copy of a run's events (engine.Tap).
type tap struct {
	mu  sync.Mutex
	evs []event.Event
}

func (t *tap) Begin(time.Time)  {}
func (t *tap) End(engine.Final) {}
func (t *tap) Events(b []event.Event) {
	t.mu.Lock()
	t.evs = append(t.evs, b...)
	t.mu.Unlock()
}

func (t *tap) all() []event.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]event.Event(nil), t.evs...)
}

// faultAt is when the fault named name fired.
func faultAt(evs []event.Event, name string) time.Duration {
	GinkgoHelper()
	for _, e := range evs {
		if e.Kind == event.Fault && e.Detail == name {
			return e.At
		}
	}
	Fail("no " + name + " fault event")
	return 0
}

// count is the number of events of kind in [from, to).
func count(evs []event.Event, kind event.Kind, from, to time.Duration) int {
	n := 0
	for _, e := range evs {
		if e.Kind == kind && e.At >= from && e.At < to {
			n++
		}
	}
	return n
}

// scopes lists the scopes of the events of kind in [from, to).
func scopes(evs []event.Event, kind event.Kind, from, to time.Duration) []string {
	seen := map[string]bool{}
	for _, e := range evs {
		if e.Kind == kind && e.At >= from && e.At < to && e.Scope != "" {
			seen[e.Scope] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// movedOff counts the clients whose stream before the kill reached victim
// and who connected to another member after it.
func movedOff(evs []event.Event, victim string, kill time.Duration) int {
	on := map[int]bool{}
	moved := map[int]bool{}
	for _, e := range evs {
		if e.Kind != event.Connect {
			continue
		}
		if e.At < kill {
			on[e.Client] = e.Detail == victim
		} else if on[e.Client] && e.Detail != victim {
			moved[e.Client] = true
		}
	}
	return len(moved)
}

// inFlight counts the chat messages sent before the kill and not yet
// acknowledged then, and how many of them were acknowledged after it.
func inFlight(evs []event.Event, kill time.Duration) (acked, unacked int) {
	open := map[string]bool{}
	for _, e := range evs {
		switch {
		case e.Kind == event.Send && e.At < kill:
			open[e.MsgID] = true
		case e.Kind == event.Ack && e.At < kill:
			delete(open, e.MsgID)
		case e.Kind == event.Ack && open[e.MsgID]:
			delete(open, e.MsgID)
			acked++
		}
	}
	return acked, acked + len(open)
}

// recovery is how long after the kill the last room had its first
// acknowledgement again.
func recovery(evs []event.Event, kill time.Duration) time.Duration {
	first := map[string]time.Duration{}
	for _, e := range evs {
		if e.Kind == event.Ack && e.At >= kill {
			if _, ok := first[e.Scope]; !ok {
				first[e.Scope] = e.At - kill
			}
		}
	}
	var last time.Duration
	for _, d := range first {
		last = max(last, d)
	}
	return last
}

// describe is a failed run's verdicts with evidence, for failure messages.
func describe(res result.Scenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: passed=%v failure=%q errors=%v messages=%+v\n", res.Name, res.Passed, res.Failure, res.Errors, res.Messages)
	for _, v := range res.Checks {
		fmt.Fprintf(&b, "  %s %s: %s\n", v.Name, v.Status, v.Summary)
		for _, ev := range v.Evidence {
			fmt.Fprintf(&b, "    %s\n", ev.Detail)
		}
	}
	return b.String()
}

// lines collects the members' game log lines (written whole, one per
// Write, with a member prefix, by procluster).
type lines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lines) Write(b []byte) (int, error) {
	if !bytes.Contains(b, []byte("game:")) { // keep what the specs read
		return len(b), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

// containing returns the lines that contain every one of parts, in order.
func (l *lines) containing(parts ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.buf.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}
