package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/cluster"
)

var _ = Describe("Clustered chat over JetStream", func() {
	It("gives every member on every instance one gapless order per room, keeps each sender's order, and acks with the room seq", func(ctx SpecContext) {
		url := startNATS().ClientURL()
		ins := []*instance{startInstance(url), startInstance(url), startInstance(url)}
		rooms := []string{"lobby", "team.a_b"}
		const perInstance, perRoom = 2, 25
		var cs []*client
		for i, in := range ins {
			cc := dial(in.srv.Addr())
			for k := range perInstance {
				c := connect(cc, fmt.Sprintf("u%d-%d", i, k))
				for _, r := range rooms {
					Expect(c.join(r, nil).GetHeadSeq()).To(BeZero())
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
						Expect(c.send(r, fmt.Sprintf("%s-%d", r, k), uint64(k))).To(Succeed())
					}
				}
			})
		}
		wg.Wait()
		total := len(cs) * perRoom
		for _, c := range cs {
			Eventually(ctx, func() int { return len(c.acks()) }).Should(Equal(perRoom*len(rooms)), "acks of %s", c.user)
			for _, r := range rooms {
				Eventually(ctx, func() int { return len(c.messages(r)) }).Should(Equal(total), "messages of %s in %s", c.user, r)
			}
		}
		for _, r := range rooms {
			ref := cs[0].messages(r)
			Expect(checkGapless(ref, 1)).To(Succeed())
			Expect(checkSenderFIFO(ref)).To(Succeed())
			for _, c := range cs[1:] {
				Expect(checkSame(ref, c.messages(r))).To(Succeed(), "%s in %s", c.user, r)
			}
		}
		for _, c := range cs {
			mine := map[string]uint64{}
			for _, r := range rooms {
				for _, m := range c.messages(r) {
					if m.GetSender() == c.user {
						mine[r+"/"+m.GetClientMsgId()] = m.GetSeq()
					}
				}
			}
			for _, a := range c.acks() {
				Expect(a.GetDuplicate()).To(BeFalse())
				Expect(a.GetSeq()).To(Equal(mine[a.GetRoom()+"/"+a.GetClientMsgId()]))
			}
			Expect(c.errors()).To(BeEmpty())
			Expect(c.closeAndWait()).To(Succeed())
		}
		// With no member left, every instance stopped its room feeds and
		// deleted their consumers.
		lg := newLog(url, nil)
		for _, r := range rooms {
			Eventually(ctx, func() (int, error) { return lg.Consumers(ctx, r) }).Should(BeZero(), "consumers of %s", r)
		}
	}, SpecTimeout(60*time.Second))

	It("resumes a member on another instance from its last seq: replay then live, no gap, no duplicate at the seam", func(ctx SpecContext) {
		url := startNATS().ClientURL()
		a, b, c := startInstance(url), startInstance(url), startInstance(url)
		const room, first, total = "resume", 40, 160
		sender := connect(dial(b.srv.Addr()), "sender")
		sender.join(room, nil)
		reader := connect(dial(a.srv.Addr()), "reader")
		reader.join(room, nil)
		for k := 1; k <= first; k++ {
			Expect(sender.send(room, fmt.Sprint(k), uint64(k))).To(Succeed())
		}
		Eventually(ctx, func() int { return len(reader.messages(room)) }).Should(Equal(first))
		seen := reader.messages(room)
		Expect(reader.closeAndWait()).To(Succeed())
		last := seen[len(seen)-1].GetSeq()

		// More messages arrive while the member is away and while it resumes.
		more := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(more)
			for k := first + 1; k <= total; k++ {
				Expect(sender.send(room, fmt.Sprint(k), uint64(k))).To(Succeed())
				if k == first+60 {
					time.Sleep(20 * time.Millisecond) // let the resume start mid-stream
				}
			}
		}()
		Eventually(ctx, func() int { return len(sender.acks()) }).Should(BeNumerically(">=", first+60))
		back := connect(dial(c.srv.Addr()), "reader")
		j := back.join(room, ptr(last))
		Expect(j.GetResumeComplete()).To(BeTrue())
		Expect(j.GetHeadSeq()).To(BeNumerically(">", last))
		Expect(j.GetReplayFrom()).To(Equal(last + 1))
		<-more
		Eventually(ctx, func() int { return len(back.messages(room)) }).Should(Equal(total - int(last)))
		got := back.messages(room)
		Expect(checkGapless(got, last+1)).To(Succeed())
		for _, m := range got {
			Expect(m.GetReplay()).To(Equal(m.GetSeq() <= j.GetHeadSeq()), "replay flag of seq %d", m.GetSeq())
		}
		Eventually(ctx, func() int { return len(sender.messages(room)) }).Should(Equal(total))
		Expect(checkSame(sender.messages(room)[last:], got)).To(Succeed())
		Consistently(func() int { return len(back.messages(room)) }).WithTimeout(200 * time.Millisecond).Should(Equal(total - int(last)))
	}, SpecTimeout(60*time.Second))

	It("stores a resend once across instances and answers it with duplicate=true and the first copy's seq", func(ctx SpecContext) {
		url := startNATS().ClientURL()
		a, b := startInstance(url), startInstance(url)
		const room = "dedup"
		first := connect(dial(a.srv.Addr()), "alice")
		first.join(room, nil)
		watcher := connect(dial(b.srv.Addr()), "watcher")
		watcher.join(room, nil)
		Expect(first.send(room, "m1", 1)).To(Succeed())
		Expect(first.send(room, "m2", 2)).To(Succeed())
		Eventually(ctx, func() int { return len(first.acks()) }).Should(Equal(2))
		seq1 := first.acks()[0].GetSeq()

		// The same user resends m1 through the other instance, and two
		// streams race to send m3 through both instances.
		second := connect(dial(b.srv.Addr()), "alice")
		second.join(room, nil)
		Expect(second.send(room, "m1", 1)).To(Succeed())
		Eventually(ctx, func() int { return len(second.acks()) }).Should(Equal(1))
		Expect(second.acks()[0]).To(SatisfyAll(
			HaveField("Duplicate", BeTrue()), HaveField("Seq", Equal(seq1)), HaveField("ClientMsgId", Equal("m1"))))
		Expect(first.send(room, "m3", 3)).To(Succeed())
		Expect(second.send(room, "m3", 3)).To(Succeed())
		Eventually(ctx, func() int { return len(first.acks()) }).Should(Equal(3))
		Eventually(ctx, func() int { return len(second.acks()) }).Should(Equal(2))
		a3, b3 := first.acks()[2], second.acks()[1]
		Expect(a3.GetSeq()).To(Equal(b3.GetSeq()))
		Expect(a3.GetDuplicate()).NotTo(Equal(b3.GetDuplicate()), "exactly one of the racing sends is the original")

		Eventually(ctx, func() int { return len(watcher.messages(room)) }).Should(Equal(3))
		Consistently(func() int { return len(watcher.messages(room)) }).WithTimeout(200 * time.Millisecond).Should(Equal(3))
		ids := []string{}
		for _, m := range watcher.messages(room) {
			ids = append(ids, m.GetClientMsgId())
		}
		Expect(ids).To(ConsistOf("m1", "m2", "m3"))
		Expect(checkGapless(watcher.messages(room), 1)).To(Succeed())
	}, SpecTimeout(60*time.Second))

	It("loses no acknowledged message when an instance is killed mid-run, and its clients resume on another", func(ctx SpecContext) {
		url := startNATS().ClientURL()
		ins := []*instance{startInstance(url), startInstance(url), startInstance(url)}
		const room, perSender = "kill", 150
		// obs[i] watches from instance i; snd[i] sends from instance i.
		obs := make([]*client, len(ins))
		for i, in := range ins {
			obs[i] = connect(dial(in.srv.Addr()), fmt.Sprintf("obs%d", i))
			obs[i].join(room, nil)
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
			c := connect(dial(in.srv.Addr()), user)
			c.join(room, nil)
			wg.Go(func() {
				defer GinkgoRecover()
				k := 1
				for ; k <= perSender; k++ {
					if c.send(room, fmt.Sprint(k), uint64(k)) != nil {
						break
					}
					time.Sleep(2 * time.Millisecond) // spread the run over the kill
				}
				if i != 0 {
					Eventually(ctx, func() int { return len(c.acks()) }).Should(Equal(perSender))
					for _, a := range c.acks() {
						logs[i].acked[a.GetClientMsgId()] = a.GetSeq()
					}
					return
				}
				// The killed instance's sender: keep what was acked, then
				// resume on instance 1 and resend everything not acked, in
				// order, with the same client_msg_id.
				<-killed
				Eventually(c.done).Should(BeClosed())
				for _, a := range c.acks() {
					logs[i].acked[a.GetClientMsgId()] = a.GetSeq()
				}
				acked := len(logs[i].acked)
				Expect(acked).To(BeNumerically("<", perSender), "the kill came after the whole run")
				c2 := connect(dial(ins[1].srv.Addr()), user)
				c2.join(room, nil)
				resent := 0
				for k := 1; k <= perSender; k++ {
					if _, ok := logs[i].acked[fmt.Sprint(k)]; !ok {
						Expect(c2.send(room, fmt.Sprint(k), uint64(k))).To(Succeed())
						resent++
					}
				}
				Eventually(ctx, func() int { return len(c2.acks()) }).Should(Equal(resent))
				for _, a := range c2.acks() {
					logs[i].acked[a.GetClientMsgId()] = a.GetSeq()
				}
			})
		}
		Eventually(ctx, func() int { return len(obs[1].messages(room)) }).Should(BeNumerically(">=", perSender))
		ins[0].kill()
		close(killed)
		Eventually(obs[0].done).Should(BeClosed())
		before := obs[0].messages(room)
		Expect(checkGapless(before, 1)).To(Succeed())
		var resumeAfter uint64
		if len(before) > 0 {
			resumeAfter = before[len(before)-1].GetSeq()
		}
		obs0 := connect(dial(ins[2].srv.Addr()), "obs0")
		Expect(obs0.join(room, ptr(resumeAfter)).GetResumeComplete()).To(BeTrue())
		wg.Wait()

		total := len(ins) * perSender
		for _, o := range []*client{obs[1], obs[2], obs0} {
			Eventually(ctx, func() int { return len(o.messages(room)) + len(before)*boolInt(o == obs0) }).Should(Equal(total), "messages seen by %s", o.user)
		}
		ref := obs[1].messages(room)
		Expect(checkGapless(ref, 1)).To(Succeed())
		Expect(checkSame(ref, obs[2].messages(room))).To(Succeed())
		Expect(checkSame(ref, append(before, obs0.messages(room)...))).To(Succeed())
		Expect(checkSenderFIFO(ref)).To(Succeed())
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

		a := connect(dial(srv.Addr()), "a")
		a.join("r", nil)
		b := connect(dial(other.srv.Addr()), "b")
		b.join("r", nil)
		Expect(b.send("r", "x", 1)).To(Succeed())
		Eventually(ctx, func() []*chatv1.Message { return a.messages("r") }).Should(HaveLen(1))
		Expect(a.messages("r")[0]).To(SatisfyAll(HaveField("Seq", BeEquivalentTo(1)), HaveField("Sender", Equal("b"))))
	}, SpecTimeout(30*time.Second))

	DescribeTable("rejects flag combinations that cannot work",
		func(mod func(*reference.Config), want string) {
			cfg := reference.DefaultConfig()
			mod(&cfg)
			Expect(cfg.Check()).To(MatchError(ContainSubstring(want)))
		},
		Entry("both --nats and --nats-embed", func(c *reference.Config) { c.NATS, c.NATSEmbed = "nats://x", "/tmp/x" }, "exclude each other"),
		Entry("unknown storage", func(c *reference.Config) { c.NATSStorage = "disk" }, "--nats-storage"),
		Entry("no replicas", func(c *reference.Config) { c.NATSReplicas = 0 }, "--nats-replicas"),
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
		url := startNATS().ClientURL()
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

	It("ranges over stored messages and follows new ones in order", func(ctx SpecContext) {
		url := startNATS().ClientURL()
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
		url := startNATS().ClientURL()
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
