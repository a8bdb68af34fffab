package shard_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/reference"
)

const threeShards = `name: three-shards
service: chat
seed: 11
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
    count: 4
    behaviour: lurker
    rooms: 3
faults:
  - fault: cancel
    at: 2s
    fraction: 0.5
    roles: [chatter]
checks:
  - total-order
  - no-gaps
  - no-duplicates
  - no-lost-acks
  - sender-fifo
  - status-codes
  - leaks: { settle: 15s }
`

// readAll returns every event of a raw file's only scenario.
func readAll(path string) (*shard.Header, []event.Event) {
	r, err := shard.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer r.Close()
	h, err := r.Next()
	Expect(err).NotTo(HaveOccurred())
	var out []event.Event
	for {
		e, err := r.Event()
		if err == io.EOF {
			break
		}
		Expect(err).NotTo(HaveOccurred())
		out = append(out, *e)
	}
	_, err = r.Next()
	Expect(err).To(Equal(io.EOF))
	return h, out
}

// record adds a latency as the metrics package does (µs, clamped).
func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := min(max(d.Microseconds(), 1), 60_000_000)
	Expect(h.RecordValue(us)).To(Succeed())
}

func describe(res result.Scenario) string {
	s := fmt.Sprintf("%s passed=%v failure=%q msgs=%+v errors=%v\n", res.Name, res.Passed, res.Failure, res.Messages, res.Errors)
	for _, v := range res.Checks {
		s += fmt.Sprintf("  %s %s %d %s %v\n", v.Name, v.Status, v.Violations, v.Summary, v.Evidence)
	}
	return s
}

var _ = Describe("a three-shard run against one reference server", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(10 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	It("merges into one report whose checks pass and whose percentiles are exact", func(ctx SpecContext) {
		sctx, cancel := context.WithCancel(context.Background())
		log := slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
		srv, err := reference.StartDefault(sctx, log)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() {
			cancel()
			_ = srv.Wait()
		})

		const n = 3
		targets := [][]string{{srv.Addr()}, {srv.Addr()}, {srv.Addr()}}
		sr := runShards(ctx, threeShards, targets, log, engine.WithServerEnv("http://"+srv.AdminAddr()))
		paths, results, plan := sr.paths, sr.results, sr.plan

		// Each shard ran its own share, and the shares cover every client;
		// the fault hit exactly the plan's choice, each client in its shard.
		connected := map[int]int{}
		faulted := map[int]int{}
		sent := int64(0)
		for i, p := range paths {
			h, evs := readAll(p)
			Expect(h.Index).To(Equal(i))
			Expect(h.Count).To(Equal(n))
			mine := map[int]bool{}
			for _, c := range plan.Shard(i, n) {
				mine[c] = true
			}
			Expect(results[i].Clients).To(Equal(len(mine)))
			for _, e := range evs {
				if e.Client >= 0 {
					Expect(mine).To(HaveKey(e.Client), "shard %d: event %v of client %d", i, e.Kind, e.Client)
				}
				switch e.Kind {
				case event.Connect:
					connected[e.Client] = i
				case event.Fault:
					if e.Client >= 0 {
						faulted[e.Client] = i
					}
				case event.Send:
					sent++
				}
			}
		}
		Expect(connected).To(HaveLen(len(plan.Clients)))
		Expect(plan.Firings).To(HaveLen(1))
		var hit []int
		for c := range faulted {
			hit = append(hit, c)
		}
		sort.Ints(hit)
		Expect(hit).To(Equal(plan.Firings[0].Clients))

		merged, err := shard.Merge(ctx, paths[2], paths[0], paths[1])
		Expect(err).NotTo(HaveOccurred())
		Expect(merged).To(HaveLen(1))
		res := merged[0].Result
		Expect(res.Passed).To(BeTrue(), describe(res))
		Expect(res.Clients).To(Equal(len(plan.Clients)))
		Expect(res.Messages.Sent).To(Equal(sent))
		Expect(res.Messages.Sent).To(Equal(results[0].Messages.Sent + results[1].Messages.Sent + results[2].Messages.Sent))
		Expect(res.Checks).To(HaveLen(len(sr.scen.Checks)))
		leaks := res.Checks[len(res.Checks)-1]
		Expect(leaks.Summary).To(And(ContainSubstring("shard 1/3:"), ContainSubstring("shard 3/3:")))

		// Exact: the merged percentiles are those of one histogram fed every
		// shard's samples, overall and per role.
		overall, perRole, _ := unionHistograms(paths)
		expectExactPercentiles(res, overall, perRole)
		Expect(res.LatencyMS.Count).To(Equal(results[0].LatencyMS.Count + results[1].LatencyMS.Count + results[2].LatencyMS.Count))

		run := shard.Report(merged)
		Expect(run.Passed).To(BeTrue())
		Expect(run.Seed).To(BeEquivalentTo(11))
		for _, v := range res.Checks {
			Expect(v.Status).To(Equal(check.Pass), describe(res))
		}
	}, SpecTimeout(50*time.Second))
})
