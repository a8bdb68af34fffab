package shard_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"golang.org/x/sync/errgroup"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/internal/refcluster"
)

// clusterChat is the chat scenario every cluster spec runs as three shards:
// chatters, lurkers and resumers share three rooms, so every room has members
// on every instance. %s is the fault block ("" for none).
const clusterChat = `name: cluster-chat
service: chat
seed: 23
duration: 4s
ramp: 500ms
settle: 0s
roles:
  - name: chatter
    count: 9
    behaviour: chatter
    rooms: 3
    rate: 10/s
    params:
      rooms_per_client: 2
  - name: lurker
    count: 3
    behaviour: lurker
    rooms: 3
  - name: resumer
    count: 6
    behaviour: resumer
    rooms: 3
    rate: 5/s
    params:
      rooms_per_client: 2
      reconnect_every: 1s
%s
checks:
  - total-order
  - no-gaps
  - no-duplicates
  - no-lost-acks
  - sender-fifo
  - resume-complete
`

// clusterCollab and clusterGame put clients of every shard (and so of
// every instance) into the same two documents and matches.
const clusterCollab = `name: cluster-collab
service: collab
seed: 5
duration: 4s
ramp: 500ms
settle: 1s
roles:
  - name: editor
    count: 9
    behaviour: editor
    documents: 2
    rate: 4/s
checks:
  - convergence
  - status-codes
`

const clusterGame = `name: cluster-game
service: game
seed: 5
duration: 4s
ramp: 500ms
settle: 1s
roles:
  - name: player
    count: 9
    behaviour: player
    matches: 2
    rate: 10/s
checks:
  - game-invariants
  - status-codes
`

// killAt kills instance 0 (shard 0's target) 2 s into the run; the fault
// fires in shard 0 only (engine.WithShard: server-process faults).
const killAt = `faults:
  - fault: kill-server
    at: 2s
`

// shardRun is the outcome of one run of a scenario as several shards.
type shardRun struct {
	paths   []string
	results []result.Scenario
	scen    *scenario.Scenario
	plan    *scenario.Plan
	merged  []shard.Scenario
}

// runShards runs yaml as len(targets) shards, shard i against the list
// targets[i] (engine.WithTargets: failover in list order) with opts added,
// each writing its raw file, then merges the files in shard order.
func runShards(ctx context.Context, yaml string, targets [][]string, log *slog.Logger, opts ...engine.Option) shardRun {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	file := filepath.Join(dir, "run.yaml")
	Expect(os.WriteFile(file, []byte(yaml), 0o644)).To(Succeed())
	n := len(targets)
	sr := shardRun{paths: make([]string, n), results: make([]result.Scenario, n)}
	var g errgroup.Group
	for i := range n {
		scs, err := scenario.Load(file) // one copy per shard, as on separate machines
		Expect(err).NotTo(HaveOccurred())
		sr.paths[i] = filepath.Join(dir, fmt.Sprintf("shard-%d.raw", i))
		w, err := shard.Create(sr.paths[i])
		Expect(err).NotTo(HaveOccurred())
		sec := w.Section(shard.HeaderFor(scs[0], strings.Join(targets[i], ","), i, n))
		opts := append([]engine.Option{engine.WithTargets(targets[i]...), engine.WithShard(i, n), engine.WithTap(sec), engine.WithLogger(log)}, opts...)
		g.Go(func() error {
			res, err := engine.Run(ctx, scs[0], opts...)
			sr.results[i] = res
			if err != nil {
				_ = w.Close()
				return fmt.Errorf("shard %d: %w", i, err)
			}
			if err := sec.Close(res); err != nil {
				return err
			}
			return w.Close()
		})
	}
	Expect(g.Wait()).To(Succeed())
	s, err := scenario.Parse(file, []byte(yaml))
	Expect(err).NotTo(HaveOccurred())
	sr.scen, sr.plan = s, scenario.NewPlan(s)
	sr.merged, err = shard.Merge(ctx, sr.paths...)
	Expect(err).NotTo(HaveOccurred())
	Expect(sr.merged).To(HaveLen(1))
	return sr
}

// unionHistograms feeds one histogram (and one per role) every latency
// sample of every shard's raw file, as the metrics package records them.
func unionHistograms(paths []string) (*hdrhistogram.Histogram, map[string]*hdrhistogram.Histogram, [][]event.Event) {
	GinkgoHelper()
	overall := metrics.NewHistogram()
	perRole := map[string]*hdrhistogram.Histogram{}
	var all [][]event.Event
	for _, p := range paths {
		_, evs := readAll(p)
		all = append(all, evs)
		for _, e := range evs {
			if (e.Kind == event.Deliver || e.Kind == event.Tick) && e.Latency > 0 {
				record(overall, e.Latency)
				if e.Kind == event.Deliver {
					if perRole[e.Role] == nil {
						perRole[e.Role] = metrics.NewHistogram()
					}
					record(perRole[e.Role], e.Latency)
				}
			}
		}
	}
	return overall, perRole, all
}

// expectExactPercentiles asserts the merged result's latency summaries are
// those of the union histograms.
func expectExactPercentiles(res result.Scenario, overall *hdrhistogram.Histogram, perRole map[string]*hdrhistogram.Histogram) {
	GinkgoHelper()
	Expect(overall.TotalCount()).To(BeNumerically(">", 100))
	Expect(res.LatencyMS).To(Equal(metrics.Summary(overall)))
	for _, r := range res.Roles {
		if h := perRole[r.Name]; h != nil {
			Expect(r.LatencyMS).To(Equal(metrics.Summary(h)), "role %s", r.Name)
			Expect(r.Distribution).To(Equal(metrics.Distribution(h)), "role %s", r.Name)
		}
	}
}

var _ = Describe("a three-shard run against three clustered reference instances", func() {
	var (
		log *slog.Logger
		ins []*refcluster.Instance
	)
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			// nats-server's background loops included.
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
		log = slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
		ins = refcluster.StartN(GinkgoT(), 3, refcluster.StartNATS(GinkgoT()).ClientURL(), log)
	})

	It("passes every ordering and loss check across instances, with exact merged percentiles", func(ctx SpecContext) {
		// One target per shard: each shard's clients stay on its instance.
		targets := [][]string{{ins[0].Addr()}, {ins[1].Addr()}, {ins[2].Addr()}}
		cr := runShards(ctx, fmt.Sprintf(clusterChat, ""), targets, log)
		res := cr.merged[0].Result
		Expect(res).To(matchers.PassAllChecks(), describe(res))
		Expect(res.Checks).To(HaveLen(6))
		for _, v := range res.Checks {
			Expect(v.Status).To(Equal(check.Pass), describe(res))
		}
		Expect(res.Clients).To(Equal(len(cr.plan.Clients)))
		Expect(res.Messages.Sent).To(Equal(cr.results[0].Messages.Sent + cr.results[1].Messages.Sent + cr.results[2].Messages.Sent))

		overall, perRole, all := unionHistograms(cr.paths)
		expectExactPercentiles(res, overall, perRole)

		// Cross-instance for real: every shard delivered messages sent by
		// clients of every other shard (each shard dials only its instance).
		senderShard := map[string]int{}
		for i, evs := range all {
			for _, e := range evs {
				if e.Kind == event.Send {
					senderShard[e.User] = i
				}
			}
		}
		for i, evs := range all {
			from := map[int]bool{}
			resumed := 0
			for _, e := range evs {
				if e.Kind == event.Deliver {
					from[senderShard[e.Sender]] = true
				}
				if e.Kind == event.Join && e.HasResume {
					resumed++
				}
			}
			Expect(from).To(HaveLen(3), "shard %d saw senders of shards %v only", i, from)
			Expect(resumed).To(BeNumerically(">", 0), "shard %d: no resumer rejoined", i)
		}
	}, SpecTimeout(50*time.Second))

	DescribeTable("shares documents and matches across instances: merged checks pass",
		func(ctx SpecContext, yaml string, checks int, bySender bool) {
			targets := [][]string{{ins[0].Addr()}, {ins[1].Addr()}, {ins[2].Addr()}}
			cr := runShards(ctx, yaml, targets, log)
			res := cr.merged[0].Result
			Expect(res).To(matchers.PassAllChecks(), describe(res))
			Expect(res.Checks).To(HaveLen(checks))
			for _, v := range res.Checks {
				Expect(v.Status).To(Equal(check.Pass), describe(res))
			}
			Expect(res.Messages.Sent).To(BeNumerically(">", 0))
			if !bySender {
				return // game updates name no sender: reference/cluster's game spec shows one match across instances
			}
			// Every shard received updates caused by clients of the other
			// shards, which reached the scope only through another instance.
			Expect(res.Messages.Delivered).To(BeNumerically(">", 0))
			_, _, all := unionHistograms(cr.paths)
			shardOf := map[string]int{}
			for i, evs := range all {
				for _, e := range evs {
					if e.Kind == event.Connect {
						shardOf[e.User] = i
					}
				}
			}
			for i, evs := range all {
				from := map[int]bool{}
				for _, e := range evs {
					if e.Kind == event.Deliver && e.Sender != "" {
						if j, ok := shardOf[e.Sender]; ok {
							from[j] = true
						}
					}
				}
				Expect(len(from)).To(BeNumerically(">=", 2), "shard %d saw updates from shards %v only", i, from)
			}
		},
		Entry("collab: editors of two documents converge", clusterCollab, 2, true, SpecTimeout(50*time.Second)),
		Entry("game: players of two matches keep the game invariants", clusterGame, 2, false, SpecTimeout(50*time.Second)),
	)

	It("loses no acknowledged message when one instance is killed mid-run, and its clients fail over to the next instance", func(ctx SpecContext) {
		// Every shard gets all three instances, its own first
		// (engine.WithTargets): client i prefers the (i mod 3)-th of its
		// shard's list, so every instance serves clients of several
		// shards. kill-server (fired by shard 0 at 2 s) stops instance 0
		// hard; the engine's pick_first failover moves its clients on, to
		// the instance after it in their lists: instance 1 in every
		// rotation of (0, 1, 2).
		addrs := []string{ins[0].Addr(), ins[1].Addr(), ins[2].Addr()}
		targets := make([][]string, 3)
		for i := range 3 {
			targets[i] = []string{addrs[i], addrs[(i+1)%3], addrs[(i+2)%3]}
		}
		k := refcluster.NewKiller(ins[0])
		cr := runShards(ctx, fmt.Sprintf(clusterChat, killAt), targets, log, engine.WithFaultEnv(k))
		Expect(k.Killed()).To(BeClosed(), "the kill-server fault never fired")

		res := cr.merged[0].Result
		Expect(res).To(matchers.PassCheck("total-order", "no-gaps", "no-duplicates", "no-lost-acks", "sender-fifo"), describe(res))
		overall, perRole, _ := unionHistograms(cr.paths)
		expectExactPercentiles(res, overall, perRole)
		all := alignedEvents(cr.paths)
		expectResumesCompleteOrKilled(res, all)

		// Walk each shard's events in order, following every client's
		// current stream's instance (Connect's Detail; plan indices are
		// unique across shards).
		victim := addrs[0]
		onVictim := map[int]int{} // client -> its shard, for clients that had a stream on instance 0
		movedTo := map[int]string{}
		rejoined := map[int]bool{}
		resumed := 0
		reached := make([]map[string]bool, 3) // per shard: the instances its clients reached
		type msg struct{ sender, id string }
		delivered := map[string]map[uint64]msg{} // room -> seq -> message, as the survivors delivered it
		// owedFrom: per room, the lowest seq a membership on a surviving
		// instance was to receive (a join's head+1, or its first replayed
		// seq): a message acked before any survivor's membership began is
		// owed to none of them.
		owedFrom := map[string]uint64{}
		var ackedByVictim []event.Event
		for i, evs := range all {
			reached[i] = map[string]bool{}
			cur := map[int]string{}
			for _, e := range evs {
				switch e.Kind {
				case event.Connect:
					Expect(e.Detail).To(BeElementOf(addrs), "client %d's Connect names no target", e.Client)
					cur[e.Client] = e.Detail
					reached[i][e.Detail] = true
					if e.Detail == victim {
						onVictim[e.Client] = i
					} else if _, ok := onVictim[e.Client]; ok && movedTo[e.Client] == "" {
						movedTo[e.Client] = e.Detail
					}
				case event.Join:
					if cur[e.Client] != victim {
						first := e.Seq + 1
						if e.ReplayFrom > 0 {
							first = e.ReplayFrom
						}
						if from, ok := owedFrom[e.Scope]; !ok || first < from {
							owedFrom[e.Scope] = first
						}
					}
					if movedTo[e.Client] != "" && cur[e.Client] == movedTo[e.Client] && !rejoined[e.Client] {
						rejoined[e.Client] = true
						if e.HasResume {
							resumed++
						}
					}
				case event.Ack:
					if cur[e.Client] == victim && e.Seq > 0 && !e.Duplicate {
						ackedByVictim = append(ackedByVictim, e)
					}
				case event.Deliver:
					if cur[e.Client] != victim {
						if delivered[e.Scope] == nil {
							delivered[e.Scope] = map[uint64]msg{}
						}
						delivered[e.Scope][e.Seq] = msg{e.Sender, e.MsgID}
					}
				}
			}
		}
		for i := range reached {
			Expect(len(reached[i])).To(BeNumerically(">=", 2), "shard %d's clients did not spread over its targets: %v", i, reached[i])
		}
		Expect(len(onVictim)).To(BeNumerically(">=", 3), "clients on the killed instance")
		for c, sh := range onVictim {
			Expect(movedTo).To(HaveKeyWithValue(c, addrs[1]), "client %d (shard %d) did not fail over to the next instance", c, sh)
			Expect(rejoined).To(HaveKey(c), "client %d (shard %d) never joined its rooms again after failing over", c, sh)
		}
		Expect(resumed).To(BeNumerically(">", 0), "no client resumed from its position after failing over")
		AddReportEntry("failover", fmt.Sprintf("%d clients on the killed instance moved to %s, %d resumed; %d acks by the killed instance checked", len(onVictim), addrs[1], resumed, len(ackedByVictim)))

		// No acknowledged message is lost: every message the killed
		// instance acknowledged reached members on the surviving
		// instances (live or replayed on resume), at the acked seq.
		checked := 0
		for _, e := range ackedByVictim {
			if from, ok := owedFrom[e.Scope]; !ok || e.Seq < from {
				continue
			}
			checked++
			Expect(delivered[e.Scope]).To(HaveKeyWithValue(e.Seq, msg{e.User, e.MsgID}),
				"message %s/%s acked by the killed instance at seq %d of %s never reached the survivors", e.User, e.MsgID, e.Seq, e.Scope)
		}
		Expect(checked).To(BeNumerically(">", 10), "acks by the killed instance owed to members on the survivors")
	}, SpecTimeout(55*time.Second))
})

// alignedEvents reads every shard's events, At shifted as shard.Merge
// shifts them: by the shard's wall-clock start offset from the earliest.
func alignedEvents(paths []string) [][]event.Event {
	GinkgoHelper()
	hs := make([]*shard.Header, len(paths))
	out := make([][]event.Event, len(paths))
	var base time.Time
	for i, p := range paths {
		hs[i], out[i] = readAll(p)
		if base.IsZero() || hs[i].StartedAt.Before(base) {
			base = hs[i].StartedAt
		}
	}
	for i := range out {
		off := hs[i].StartedAt.Sub(base)
		for j := range out[i] {
			out[i][j].At += off
		}
	}
	return out
}

// expectResumesCompleteOrKilled asserts the merged resume-complete verdict
// passes: a replay the kill cut short ends with its stream's broken
// Disconnect, which the engine emits before the Leaves it implies, and
// check/resume drops such replays unjudged; every other resume must be
// complete.
func expectResumesCompleteOrKilled(res result.Scenario, _ [][]event.Event) {
	GinkgoHelper()
	var v *check.Verdict
	for i := range res.Checks {
		if res.Checks[i].Name == "resume-complete" {
			v = &res.Checks[i]
		}
	}
	Expect(v).NotTo(BeNil(), "no resume-complete verdict")
	Expect(v.Status).To(Equal(check.Pass), describe(res))
}
