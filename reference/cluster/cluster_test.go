package cluster_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/bidikit/bidikit/internal/chattest"
	"github.com/bidikit/bidikit/internal/refcluster"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/cluster"
	"github.com/bidikit/bidikit/reference/store"
)

var _ = Describe("Clustered chat over JetStream", func() {
	It("gives every member on every instance one gapless order per room, keeps each sender's order, and acks with the room seq", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		ins := []*refcluster.Instance{startInstance(url), startInstance(url), startInstance(url)}
		rooms := []string{"lobby", "team.a_b"}
		const perInstance, perRoom = 2, 25
		var cs []*chattest.Client
		for i, in := range ins {
			cc := chattest.Dial(GinkgoT(), in.Addr())
			for k := range perInstance {
				c := chattest.Connect(GinkgoT(), cc, fmt.Sprintf("u%d-%d", i, k))
				for _, r := range rooms {
					Expect(c.Join(r).GetHeadSeq()).To(BeZero())
				}
				cs = append(cs, c)
			}
		}
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(func() {
				defer GinkgoRecover()
				for k := 1; k <= perRoom; k++ {
					for _, r := range rooms {
						Expect(c.Say(r, fmt.Sprintf("%s-%d", r, k), uint64(k))).To(Succeed())
					}
				}
			})
		}
		wg.Wait()
		total := len(cs) * perRoom
		for _, c := range cs {
			Eventually(ctx, func() int { return len(c.Acks()) }).Should(Equal(perRoom*len(rooms)), "acks of %s", c.User)
			for _, r := range rooms {
				Eventually(ctx, func() int { return len(c.Messages(r)) }).Should(Equal(total), "messages of %s in %s", c.User, r)
			}
		}
		for _, r := range rooms {
			ref := cs[0].Messages(r)
			Expect(chattest.Gapless(ref, 1)).To(Succeed())
			Expect(chattest.SenderFIFO(ref)).To(Succeed())
			for _, c := range cs[1:] {
				Expect(chattest.Same(ref, c.Messages(r))).To(Succeed(), "%s in %s", c.User, r)
			}
		}
		for _, c := range cs {
			mine := map[string]uint64{}
			for _, r := range rooms {
				for _, m := range c.Messages(r) {
					if m.GetSender() == c.User {
						mine[r+"/"+m.GetClientMsgId()] = m.GetSeq()
					}
				}
			}
			for _, a := range c.Acks() {
				Expect(a.GetDuplicate()).To(BeFalse())
				Expect(a.GetSeq()).To(Equal(mine[a.GetRoom()+"/"+a.GetClientMsgId()]))
			}
			Expect(c.Errors()).To(BeEmpty())
			Expect(c.CloseAndWait()).To(Succeed())
		}
		// With no member left, every instance stopped its room feeds and
		// deleted their consumers.
		lg := newLog(url, nil)
		for _, r := range rooms {
			Eventually(ctx, func() (int, error) { return lg.Consumers(ctx, r) }).Should(BeZero(), "consumers of %s", r)
		}
	}, SpecTimeout(60*time.Second))

	It("resumes a member on another instance from its last seq: replay then live, no gap, no duplicate at the seam", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		a, b, c := startInstance(url), startInstance(url), startInstance(url)
		const room, first, total = "resume", 40, 160
		sender := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), b.Addr()), "sender")
		sender.Join(room)
		reader := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), a.Addr()), "reader")
		reader.Join(room)
		for k := 1; k <= first; k++ {
			Expect(sender.Say(room, fmt.Sprint(k), uint64(k))).To(Succeed())
		}
		Eventually(ctx, func() int { return len(reader.Messages(room)) }).Should(Equal(first))
		seen := reader.Messages(room)
		Expect(reader.CloseAndWait()).To(Succeed())
		last := seen[len(seen)-1].GetSeq()

		// More messages arrive while the member is away and while it resumes.
		more := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(more)
			for k := first + 1; k <= total; k++ {
				Expect(sender.Say(room, fmt.Sprint(k), uint64(k))).To(Succeed())
				if k == first+60 {
					time.Sleep(20 * time.Millisecond) // let the resume start mid-stream
				}
			}
		}()
		Eventually(ctx, func() int { return len(sender.Acks()) }).Should(BeNumerically(">=", first+60))
		back := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), c.Addr()), "reader")
		j := back.JoinFrom(room, chattest.Ptr(last))
		Expect(j.GetResumeComplete()).To(BeTrue())
		Expect(j.GetHeadSeq()).To(BeNumerically(">", last))
		Expect(j.GetReplayFrom()).To(Equal(last + 1))
		<-more
		Eventually(ctx, func() int { return len(back.Messages(room)) }).Should(Equal(total - int(last)))
		got := back.Messages(room)
		Expect(chattest.Gapless(got, last+1)).To(Succeed())
		for _, m := range got {
			Expect(m.GetReplay()).To(Equal(m.GetSeq() <= j.GetHeadSeq()), "replay flag of seq %d", m.GetSeq())
		}
		Eventually(ctx, func() int { return len(sender.Messages(room)) }).Should(Equal(total))
		Expect(chattest.Same(sender.Messages(room)[last:], got)).To(Succeed())
		Consistently(func() int { return len(back.Messages(room)) }).WithTimeout(200 * time.Millisecond).Should(Equal(total - int(last)))
	}, SpecTimeout(60*time.Second))

	It("stores a resend once across instances and answers it with duplicate=true and the first copy's seq", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		a, b := startInstance(url), startInstance(url)
		const room = "dedup"
		first := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), a.Addr()), "alice")
		first.Join(room)
		watcher := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), b.Addr()), "watcher")
		watcher.Join(room)
		Expect(first.Say(room, "m1", 1)).To(Succeed())
		Expect(first.Say(room, "m2", 2)).To(Succeed())
		Eventually(ctx, func() int { return len(first.Acks()) }).Should(Equal(2))
		seq1 := first.Acks()[0].GetSeq()

		// The same user resends m1 through the other instance, and two
		// streams race to send m3 through both instances.
		second := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), b.Addr()), "alice")
		second.Join(room)
		Expect(second.Say(room, "m1", 1)).To(Succeed())
		Eventually(ctx, func() int { return len(second.Acks()) }).Should(Equal(1))
		Expect(second.Acks()[0]).To(SatisfyAll(
			HaveField("Duplicate", BeTrue()), HaveField("Seq", Equal(seq1)), HaveField("ClientMsgId", Equal("m1"))))
		Expect(first.Say(room, "m3", 3)).To(Succeed())
		Expect(second.Say(room, "m3", 3)).To(Succeed())
		Eventually(ctx, func() int { return len(first.Acks()) }).Should(Equal(3))
		Eventually(ctx, func() int { return len(second.Acks()) }).Should(Equal(2))
		a3, b3 := first.Acks()[2], second.Acks()[1]
		Expect(a3.GetSeq()).To(Equal(b3.GetSeq()))
		Expect(a3.GetDuplicate()).NotTo(Equal(b3.GetDuplicate()), "exactly one of the racing sends is the original")

		Eventually(ctx, func() int { return len(watcher.Messages(room)) }).Should(Equal(3))
		Consistently(func() int { return len(watcher.Messages(room)) }).WithTimeout(200 * time.Millisecond).Should(Equal(3))
		ids := []string{}
		for _, m := range watcher.Messages(room) {
			ids = append(ids, m.GetClientMsgId())
		}
		Expect(ids).To(ConsistOf("m1", "m2", "m3"))
		Expect(chattest.Gapless(watcher.Messages(room), 1)).To(Succeed())
	}, SpecTimeout(60*time.Second))

	It("loses no acknowledged message when an instance is killed mid-run, and its clients resume on another", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		ins := []*refcluster.Instance{startInstance(url), startInstance(url), startInstance(url)}
		const room, perSender = "kill", 150
		// obs[i] watches from instance i; snd[i] sends from instance i.
		obs := make([]*chattest.Client, len(ins))
		for i, in := range ins {
			obs[i] = chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), in.Addr()), fmt.Sprintf("obs%d", i))
			obs[i].Join(room)
		}
		type sendLog struct {
			mu    sync.Mutex
			acked map[string]uint64 // client_msg_id -> seq
		}
		logs := make([]*sendLog, len(ins))
		killed := make(chan struct{})
		var wg sync.WaitGroup
		for i, in := range ins {
			logs[i] = &sendLog{acked: map[string]uint64{}}
			user := fmt.Sprintf("snd%d", i)
			c := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), in.Addr()), user)
			c.Join(room)
			wg.Go(func() {
				defer GinkgoRecover()
				k := 1
				for ; k <= perSender; k++ {
					if c.Say(room, fmt.Sprint(k), uint64(k)) != nil {
						break
					}
					time.Sleep(2 * time.Millisecond) // spread the run over the kill
				}
				if i != 0 {
					Eventually(ctx, func() int { return len(c.Acks()) }).Should(Equal(perSender))
					for _, a := range c.Acks() {
						logs[i].acked[a.GetClientMsgId()] = a.GetSeq()
					}
					return
				}
				// The killed instance's sender: keep what was acked, then
				// resume on instance 1 and resend everything not acked, in
				// order, with the same client_msg_id.
				<-killed
				Eventually(c.Done()).Should(BeClosed())
				for _, a := range c.Acks() {
					logs[i].acked[a.GetClientMsgId()] = a.GetSeq()
				}
				acked := len(logs[i].acked)
				Expect(acked).To(BeNumerically("<", perSender), "the kill came after the whole run")
				c2 := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ins[1].Addr()), user)
				c2.Join(room)
				resent := 0
				for k := 1; k <= perSender; k++ {
					if _, ok := logs[i].acked[fmt.Sprint(k)]; !ok {
						Expect(c2.Say(room, fmt.Sprint(k), uint64(k))).To(Succeed())
						resent++
					}
				}
				Eventually(ctx, func() int { return len(c2.Acks()) }).Should(Equal(resent))
				for _, a := range c2.Acks() {
					logs[i].acked[a.GetClientMsgId()] = a.GetSeq()
				}
			})
		}
		Eventually(ctx, func() int { return len(obs[1].Messages(room)) }).Should(BeNumerically(">=", perSender))
		ins[0].Kill()
		close(killed)
		Eventually(obs[0].Done()).Should(BeClosed())
		before := obs[0].Messages(room)
		Expect(chattest.Gapless(before, 1)).To(Succeed())
		var resumeAfter uint64
		if len(before) > 0 {
			resumeAfter = before[len(before)-1].GetSeq()
		}
		obs0 := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ins[2].Addr()), "obs0")
		Expect(obs0.JoinFrom(room, chattest.Ptr(resumeAfter)).GetResumeComplete()).To(BeTrue())
		wg.Wait()

		total := len(ins) * perSender
		for _, o := range []*chattest.Client{obs[1], obs[2], obs0} {
			Eventually(ctx, func() int { return len(o.Messages(room)) + len(before)*boolInt(o == obs0) }).Should(Equal(total), "messages seen by %s", o.User)
		}
		ref := obs[1].Messages(room)
		Expect(chattest.Gapless(ref, 1)).To(Succeed())
		Expect(chattest.Same(ref, obs[2].Messages(room))).To(Succeed())
		Expect(chattest.Same(ref, append(before, obs0.Messages(room)...))).To(Succeed())
		Expect(chattest.SenderFIFO(ref)).To(Succeed())
		at := map[string]uint64{} // sender/id -> seq, each exactly once
		for _, m := range ref {
			key := m.GetSender() + "/" + m.GetClientMsgId()
			Expect(at).NotTo(HaveKey(key), "stored twice")
			at[key] = m.GetSeq()
		}
		for i, l := range logs {
			Expect(l.acked).To(HaveLen(perSender))
			for id, seq := range l.acked {
				Expect(at).To(HaveKeyWithValue(fmt.Sprintf("snd%d/%s", i, id), seq), "acknowledged message lost or renumbered")
			}
		}
	}, SpecTimeout(90*time.Second))
})

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

var _ = Describe("Build with --nats-embed", func() {
	It("starts an embedded JetStream server that other instances join with --nats", func(ctx SpecContext) {
		cfg := reference.DefaultConfig()
		cfg.Options.Addr = "127.0.0.1:0"
		cfg.Options.AdminAddr = ""
		cfg.NATSEmbed = GinkgoT().TempDir()
		cfg.NATSStorage = "memory"
		srv, err := reference.Build(cfg, testLogger())
		Expect(err).NotTo(HaveOccurred())
		sctx, cancel := context.WithCancel(context.Background())
		Expect(srv.Start(sctx)).To(Succeed())
		DeferCleanup(func() { cancel(); _ = srv.Wait() })
		Expect(srv.Storage()).To(HavePrefix("jetstream:nats://127.0.0.1:"))
		other := startInstance(srv.Storage()[len("jetstream:"):])

		a := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), srv.Addr()), "a")
		a.Join("r")
		b := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), other.Addr()), "b")
		b.Join("r")
		Expect(b.Say("r", "x", 1)).To(Succeed())
		Eventually(ctx, func() []*chatv1.Message { return a.Messages("r") }).Should(HaveLen(1))
		Expect(a.Messages("r")[0]).To(SatisfyAll(HaveField("Seq", BeEquivalentTo(1)), HaveField("Sender", Equal("b"))))
	}, SpecTimeout(30*time.Second))

	DescribeTable("rejects field combinations that cannot work, naming the fields",
		func(mod func(*reference.Config), want string) {
			cfg := reference.DefaultConfig()
			mod(&cfg)
			Expect(cfg.Check()).To(MatchError(ContainSubstring(want)))
		},
		Entry("both --nats and --nats-embed", func(c *reference.Config) { c.NATS, c.NATSEmbed = "nats://x", "/tmp/x" }, "exclude each other"),
		Entry("unknown storage", func(c *reference.Config) { c.NATSStorage = "disk" }, "NATSStorage"),
		Entry("no replicas", func(c *reference.Config) { c.NATSReplicas = 0 }, "NATSReplicas"),
	)
})

var _ = Describe("Log", func() {
	var lg *cluster.Log
	type result struct {
		seq uint64
		dup bool
		err error
	}
	publish := func(room, key string) result {
		ch := make(chan result, 1)
		lg.Publish(room, key, []byte(key), func(seq uint64, dup bool, err error) { ch <- result{seq, dup, err} })
		var r result
		Eventually(ch).Should(Receive(&r))
		return r
	}

	It("escapes room names injectively into stream and subject tokens", func() {
		names := []string{"a.b", "a_b", "a_db", "a__b", "a.", "a_", "_d", ".", "ab"}
		seen := map[string]string{}
		for _, n := range names {
			t := cluster.Token(n)
			Expect(t).To(MatchRegexp(`^[A-Za-z0-9_-]+$`))
			Expect(seen).NotTo(HaveKey(t), "%q and %q collide", n, seen[t])
			seen[t] = n
		}
	})

	It("de-duplicates a resend after the Duplicates window while the original is retained", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		lg = newLog(url, func(c *cluster.Config) { c.Duplicates = 100 * time.Millisecond })
		_, err := lg.Head(ctx, "w")
		Expect(err).NotTo(HaveOccurred())
		Expect(publish("w", "k1")).To(Equal(result{seq: 1}))
		Expect(publish("w", "k2")).To(Equal(result{seq: 2}))
		Expect(publish("w", "k1")).To(Equal(result{seq: 1, dup: true}), "inside the window: Nats-Msg-Id")
		time.Sleep(300 * time.Millisecond) // outside the window (not an assertion on time)
		Expect(publish("w", "k1")).To(Equal(result{seq: 1, dup: true}), "after the window: per-key subject")
		Expect(publish("w", "k3")).To(Equal(result{seq: 3}))
		h, err := lg.Head(ctx, "w")
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Last).To(BeEquivalentTo(3))
		Expect(h.Oldest).To(BeEquivalentTo(1))
	}, SpecTimeout(30*time.Second))

	It("stores a writer's entry only right after the writer's newest one, reads the newest back, and finds old keys", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		lg = newLog(url, func(c *cluster.Config) { c.Duplicates = 100 * time.Millisecond })
		after := func(writer, key string, last uint64) result {
			ch := make(chan result, 1)
			lg.PublishAfter("o", writer, key, []byte(key), last, func(seq uint64, dup bool, err error) { ch <- result{seq, dup, err} })
			var r result
			Eventually(ch).Should(Receive(&r))
			return r
		}
		_, _, found, err := lg.WriterLast(ctx, "o", "alice")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeFalse())
		Expect(after("alice", "a1", 0)).To(Equal(result{seq: 1}))
		Expect(publish("o", "other")).To(Equal(result{seq: 2}))
		Expect(after("bob", "b1", 0)).To(Equal(result{seq: 3}))
		r := after("alice", "a2", 0) // stale: alice's newest is at 1
		Expect(r.err).To(MatchError(cluster.ErrWriterMoved))
		Expect(r.err).To(MatchError(store.ErrConflict))
		Expect(after("alice", "a2", 1)).To(Equal(result{seq: 4}))
		Expect(after("alice", "a1", 4)).To(Equal(result{seq: 1, dup: true}), "inside the window: Nats-Msg-Id")
		// A condition that never holds never stores; inside the window a
		// clustered server answers the resend first (a single server checks
		// the condition first).
		if r := after("alice", "a1", math.MaxUint64); r.err != nil {
			Expect(r.err).To(MatchError(cluster.ErrWriterMoved))
		} else {
			Expect(r).To(Equal(result{seq: 1, dup: true}))
		}
		seq, payload, found, err := lg.WriterLast(ctx, "o", "alice")
		Expect(err).NotTo(HaveOccurred())
		Expect([]any{seq, string(payload), found}).To(Equal([]any{uint64(4), "a2", true}))

		time.Sleep(300 * time.Millisecond) // outside the window (not an assertion on time)
		Expect(after("alice", "a1", math.MaxUint64).err).To(MatchError(cluster.ErrWriterMoved), "after the window")
		seq, found, err = lg.WriterKey(ctx, "o", "alice", "a1", 4)
		Expect(err).NotTo(HaveOccurred())
		Expect([]any{seq, found}).To(Equal([]any{uint64(1), true}))
		_, found, err = lg.WriterKey(ctx, "o", "alice", "a3", 4)
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeFalse())
		_, found, err = lg.WriterKey(ctx, "o", "bob", "a1", 4)
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeFalse(), "another writer's entries do not hold the key")
		h, err := lg.Head(ctx, "o")
		Expect(err).NotTo(HaveOccurred())
		Expect(h.Last).To(BeEquivalentTo(4))
	}, SpecTimeout(30*time.Second))

	It("ranges over stored messages and follows new ones in order", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		lg = newLog(url, func(c *cluster.Config) { c.Memory = true })
		_, err := lg.Head(ctx, "f")
		Expect(err).NotTo(HaveOccurred())
		for k := range 600 {
			Expect(publish("f", fmt.Sprint(k)).err).NotTo(HaveOccurred())
		}
		var got []uint64
		Expect(lg.Range(ctx, "f", 3, 520, func(seq uint64, payload []byte) error {
			Expect(string(payload)).To(Equal(fmt.Sprint(seq - 1)))
			got = append(got, seq)
			return nil
		})).To(Succeed())
		Expect(got).To(HaveLen(518))
		Expect(got[0]).To(BeEquivalentTo(3))
		Expect(got[517]).To(BeEquivalentTo(520))

		var mu sync.Mutex
		var fed []uint64
		stop, err := lg.Follow("f", 598, func(seq uint64, _ []byte) {
			mu.Lock()
			fed = append(fed, seq)
			mu.Unlock()
		}, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)
		Expect(publish("f", "new").seq).To(BeEquivalentTo(601))
		Eventually(func() []uint64 { mu.Lock(); defer mu.Unlock(); return append([]uint64(nil), fed...) }).Should(Equal([]uint64{599, 600, 601}))
	}, SpecTimeout(30*time.Second))

	It("fails clearly when NATS is unreachable, and after Close", func(ctx SpecContext) {
		url := refcluster.StartNATS(GinkgoT()).ClientURL()
		lg = newLog(url, nil)
		Expect(lg.Close()).To(Succeed())
		r := publish("c", "k")
		Expect(r.err).To(MatchError(cluster.ErrClosed))
		_, err := cluster.Connect("nats://127.0.0.1:1", "test", nil)
		Expect(err).To(MatchError(ContainSubstring("connect to NATS")))
		_, err = cluster.New((*nats.Conn)(nil), cluster.DefaultConfig(), nil)
		Expect(err).To(HaveOccurred())
	}, SpecTimeout(30*time.Second))
})
