package shard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"golang.org/x/sync/errgroup"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/matchers"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/harness/shard"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/cluster"
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

// killAt kills instance 0 (shard 0's target) 2 s into the run; the fault
// fires in shard 0 only (engine.WithShard: server-process faults).
const killAt = `faults:
  - fault: kill-server
    at: 2s
`

// clusterInstance is one reference server (reference.Build) using the
// shared NATS server for chat.
type clusterInstance struct {
	srv  *reference.Server
	stop context.CancelFunc
	once sync.Once
}

// startClusterInstance starts an instance on 127.0.0.1:0 without an admin
// server; stopped gracefully at cleanup (a no-op after kill).
func startClusterInstance(url string, log *slog.Logger) *clusterInstance {
	GinkgoHelper()
	cfg := reference.DefaultConfig()
	cfg.Options.Addr = "127.0.0.1:0"
	cfg.Options.AdminAddr = ""
	cfg.Options.GracePeriod = 2 * time.Second
	cfg.NATS = url
	cfg.Chat.SendRate = 0 // unlimited
	srv, err := reference.Build(cfg, log)
	Expect(err).NotTo(HaveOccurred())
	Expect(srv.Storage()).To(Equal("jetstream:" + url))
	ctx, cancel := context.WithCancel(context.Background())
	Expect(srv.Start(ctx)).To(Succeed())
	in := &clusterInstance{srv: srv, stop: cancel}
	DeferCleanup(func() {
		cancel()
		in.wait()
	})
	return in
}

func (in *clusterInstance) wait() { in.once.Do(func() { _ = in.srv.Wait() }) }

// kill stops the instance hard: every connection closes at once, no drain.
func (in *clusterInstance) kill() {
	in.srv.GRPC().Stop()
	in.wait()
}

// forwarder is a TCP front (a virtual address, as a load balancer gives) for
// one shard: each accepted connection is piped to the current upstream,
// which failover switches. The accept goroutine owns the listener; each
// pipe's two copy goroutines own their pair of connections. mu guards
// upstream and conns.
type forwarder struct {
	lis net.Listener
	wg  sync.WaitGroup

	mu       sync.Mutex
	upstream string
	conns    map[net.Conn]bool
	closed   bool
}

// startForwarder listens on 127.0.0.1:0 and forwards to upstream; closed
// (listener and every pipe) at cleanup.
func startForwarder(upstream string) *forwarder {
	GinkgoHelper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	f := &forwarder{lis: lis, upstream: upstream, conns: map[net.Conn]bool{}}
	f.wg.Go(f.accept)
	DeferCleanup(f.close)
	return f
}

func (f *forwarder) Addr() string { return f.lis.Addr().String() }

// failover sends every later connection to upstream.
func (f *forwarder) failover(upstream string) {
	f.mu.Lock()
	f.upstream = upstream
	f.mu.Unlock()
}

func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for _, c := range cs {
		f.conns[c] = true
	}
	return true
}

func (f *forwarder) accept() {
	for {
		down, err := f.lis.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		to := f.upstream
		f.mu.Unlock()
		up, err := net.DialTimeout("tcp", to, 2*time.Second)
		if err != nil {
			_ = down.Close()
			continue
		}
		if !f.track(down, up) {
			_ = down.Close()
			_ = up.Close()
			return
		}
		f.wg.Go(func() { f.pipe(down, up) })
	}
}

// pipe copies both ways until either side ends, then closes both.
func (f *forwarder) pipe(a, b net.Conn) {
	var g sync.WaitGroup
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	g.Go(func() { cp(a, b) })
	g.Go(func() { cp(b, a) })
	g.Wait()
	f.mu.Lock()
	delete(f.conns, a)
	delete(f.conns, b)
	f.mu.Unlock()
}

func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	_ = f.lis.Close()
	f.wg.Wait()
}

// killer is the fault.Server that kill-server drives in shard 0: it points
// shard 0's front at the survivor, then stops the victim hard.
type killer struct {
	front    *forwarder
	victim   *clusterInstance
	survivor string
	killed   chan struct{}
}

var _ fault.Server = (*killer)(nil)

func (k *killer) Kill() error {
	k.front.failover(k.survivor)
	k.victim.kill()
	close(k.killed)
	return nil
}

func (k *killer) Restart(context.Context) error {
	return errors.New("cluster spec: a killed instance is not restarted")
}

// clusterRun is the outcome of one three-shard run against three instances.
type clusterRun struct {
	paths   []string
	results []result.Scenario
	plan    *scenario.Plan
	merged  []shard.Scenario
}

// runClusterShards runs yaml as three shards, shard i against targets[i],
// each writing its raw file, then merges the files.
func runClusterShards(ctx context.Context, yaml string, targets []string, srv fault.Server, log *slog.Logger) clusterRun {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	file := filepath.Join(dir, "cluster.yaml")
	Expect(os.WriteFile(file, []byte(yaml), 0o644)).To(Succeed())
	n := len(targets)
	cr := clusterRun{paths: make([]string, n), results: make([]result.Scenario, n)}
	var g errgroup.Group
	for i := range n {
		scs, err := scenario.Load(file) // one copy per shard, as on separate machines
		Expect(err).NotTo(HaveOccurred())
		cr.paths[i] = filepath.Join(dir, fmt.Sprintf("shard-%d.raw", i))
		w, err := shard.Create(cr.paths[i])
		Expect(err).NotTo(HaveOccurred())
		sec := w.Section(shard.HeaderFor(scs[0], []byte(yaml), targets[i], i, n))
		opts := []engine.Option{engine.WithTarget(targets[i]), engine.WithShard(i, n), engine.WithTap(sec), engine.WithLogger(log)}
		if srv != nil {
			opts = append(opts, engine.WithFaultEnv(srv))
		}
		g.Go(func() error {
			res, err := engine.Run(ctx, scs[0], opts...)
			cr.results[i] = res
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
	cr.plan = scenario.NewPlan(s)
	cr.merged, err = shard.Merge(ctx, cr.paths...)
	Expect(err).NotTo(HaveOccurred())
	Expect(cr.merged).To(HaveLen(1))
	return cr
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
		ins []*clusterInstance
	)
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			// nats-server's background loops included.
			Eventually(gleak.Goroutines).WithTimeout(20 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
		log = slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError}))
		nats, err := cluster.StartEmbedded(GinkgoT().TempDir(), "127.0.0.1:0", nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(nats.Shutdown)
		ins = nil
		for range 3 {
			ins = append(ins, startClusterInstance(nats.ClientURL(), log))
		}
	})

	It("passes every ordering and loss check across instances, with exact merged percentiles", func(ctx SpecContext) {
		targets := []string{ins[0].srv.Addr(), ins[1].srv.Addr(), ins[2].srv.Addr()}
		cr := runClusterShards(ctx, fmt.Sprintf(clusterChat, ""), targets, nil, log)
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

	It("loses no acknowledged message when one instance is killed mid-run, and its shard's clients resume on another", func(ctx SpecContext) {
		// Shard 0 dials a front that forwards to instance 0; kill-server
		// (fired by shard 0 at 2 s) points the front at instance 1 and stops
		// instance 0 hard. The engine reconnects to the same address, so
		// the front is what moves the clients to another instance.
		front := startForwarder(ins[0].srv.Addr())
		k := &killer{front: front, victim: ins[0], survivor: ins[1].srv.Addr(), killed: make(chan struct{})}
		targets := []string{front.Addr(), ins[1].srv.Addr(), ins[2].srv.Addr()}
		cr := runClusterShards(ctx, fmt.Sprintf(clusterChat, killAt), targets, k, log)
		Expect(k.killed).To(BeClosed(), "the kill-server fault never fired")

		res := cr.merged[0].Result
		Expect(res).To(matchers.PassCheck("total-order", "no-gaps", "no-duplicates", "no-lost-acks", "sender-fifo"), describe(res))
		overall, perRole, all := unionHistograms(cr.paths)
		expectExactPercentiles(res, overall, perRole)
		expectResumesCompleteOrKilled(res, all[0])

		// Shard 0's clients were cut off by the kill and came back: each
		// one connected and joined again after its broken stream, the
		// resumers with a resume position, on the survivor.
		var killedAt time.Duration
		for _, e := range all[0] {
			if e.Kind == event.Fault && e.Detail == "kill-server" {
				killedAt = e.At
			}
		}
		Expect(killedAt).To(BeNumerically(">", 0), "shard 0 recorded no kill-server fault")
		broken := map[int]bool{}
		back := map[int]bool{}
		resumed := 0
		for _, e := range all[0] {
			switch {
			case e.Kind == event.Disconnect && e.At >= killedAt && e.Code != 0 && !back[e.Client]:
				broken[e.Client] = true
			case e.Kind == event.Join && broken[e.Client]:
				back[e.Client] = true
				if e.HasResume {
					resumed++
				}
			}
		}
		Expect(broken).NotTo(BeEmpty(), "no client of shard 0 lost its stream to the kill")
		Expect(back).To(Equal(broken), "clients of shard 0 that did not rejoin after the kill")
		Expect(resumed).To(BeNumerically(">", 0))

		// No acknowledged message is lost: every message the killed
		// instance acknowledged to shard 0 before the kill reached the
		// members on the surviving instances, at the acked seq.
		type msg struct{ sender, id string }
		delivered := map[string]map[uint64]msg{}
		for _, evs := range all[1:] {
			for _, e := range evs {
				if e.Kind == event.Deliver {
					if delivered[e.Scope] == nil {
						delivered[e.Scope] = map[uint64]msg{}
					}
					delivered[e.Scope][e.Seq] = msg{e.Sender, e.MsgID}
				}
			}
		}
		ackedBefore := 0
		for _, e := range all[0] {
			if e.Kind == event.Ack && e.Seq > 0 && !e.Duplicate && e.At < killedAt {
				ackedBefore++
				Expect(delivered[e.Scope]).To(HaveKeyWithValue(e.Seq, msg{e.User, e.MsgID}),
					"message %s/%s acked by the killed instance at seq %d of %s never reached the survivors", e.User, e.MsgID, e.Seq, e.Scope)
			}
		}
		Expect(ackedBefore).To(BeNumerically(">", 10))
	}, SpecTimeout(55*time.Second))
})

// expectResumesCompleteOrKilled asserts the merged resume-complete verdict,
// excusing only what the kill explains. A resume whose replay the kill cut
// short is judged as a lie: the chat driver emits Leave before the broken
// stream's Disconnect (engine runStream: d.ended() then Disconnect), and
// check/resume judges an open replay at Leave, so its Disconnect leniency
// never applies. Each excused violation must be a "replay stopped" at a
// shard 0 client whose very next stream end after the join was broken.
func expectResumesCompleteOrKilled(res result.Scenario, shard0 []event.Event) {
	GinkgoHelper()
	var v *check.Verdict
	for i := range res.Checks {
		if res.Checks[i].Name == "resume-complete" {
			v = &res.Checks[i]
		}
	}
	Expect(v).NotTo(BeNil(), "no resume-complete verdict")
	if v.Status == check.Pass {
		return
	}
	Expect(v.Status).To(Equal(check.Fail), describe(res))
	Expect(v.Evidence).To(HaveLen(v.Violations), describe(res))
	for _, ev := range v.Evidence {
		Expect(ev.Detail).To(ContainSubstring("claimed complete but replay stopped"), describe(res))
		cut := false
		for _, e := range shard0 {
			if e.Kind == event.Disconnect && e.At >= ev.At && fmt.Sprintf("#%d %s (%s)", e.Client, e.User, e.Role) == ev.Client {
				cut = e.Code != 0
				break
			}
		}
		Expect(cut).To(BeTrue(), "resume-complete violation not explained by the kill: %+v\n%s", ev, describe(res))
		AddReportEntry("resume cut short by the kill (check/resume judges it at Leave)", ev)
	}
}
