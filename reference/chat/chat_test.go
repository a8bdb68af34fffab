package chat

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bidikit/bidikit/internal/chattest"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// noUserStream is a stream whose context carries no authenticated user.
type noUserStream struct {
	chatv1.ChatService_ConnectServer
}

func (noUserStream) Context() context.Context { return context.Background() }

func codeOf(err error) codes.Code { return status.Code(err) }

// metricSum adds up every sample a counter or gauge (vector) holds.
func metricSum(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	sum := 0.0
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		sum += d.GetCounter().GetValue() + d.GetGauge().GetValue()
	}
	return sum
}

var _ = Describe("Service", func() {
	It("implements service.Service with the contract's name and validates its config", func() {
		svc, err := New(DefaultConfig(), store.NewMemory(0), nil, nil, nil)
		Expect(err).To(MatchError(ContainSubstring("metrics")))
		Expect(svc).To(BeNil())
		bad := DefaultConfig()
		bad.QueueMessages = 0
		_, err = New(bad, store.NewMemory(0), nil, nil, nil)
		Expect(err).To(MatchError(HavePrefix("Chat.QueueMessages is 0")))
		ts := startServer(testConfig(), nil, nil)
		Expect(ts.svc.Name()).To(Equal("bidikit.chat.v1.ChatService"))
	})

	DescribeTable("concurrent senders in shared rooms: one gapless order per room, seen identically by every member, each sender's order kept",
		func(ctx SpecContext, async bool) {
			var st store.Store
			if async {
				a := newAsyncStore()
				DeferCleanup(a.Close)
				st = a
			}
			ts := startServer(testConfig(), st, nil)
			cc := chattest.Dial(GinkgoT(), ts.addr)
			rooms := []string{"r1", "r2", "r3"}
			const clients, perRoom = 6, 40
			cs := make([]*chattest.Client, clients)
			for i := range cs {
				cs[i] = chattest.Connect(GinkgoT(), cc, fmt.Sprintf("u%d", i))
				for _, r := range rooms {
					cs[i].Join(r)
				}
			}
			var wg sync.WaitGroup
			for i, c := range cs {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					for k := 1; k <= perRoom; k++ {
						for _, r := range rooms {
							id := fmt.Sprintf("%s-%d", r, k)
							Expect(c.Stream.Send(chattest.SendEv(r, id, uint64(k), fmt.Sprintf("hello %d from %d", k, i)))).To(Succeed())
						}
					}
				}()
			}
			wg.Wait()
			total := clients * perRoom
			for _, c := range cs {
				Eventually(ctx, func() int { return len(c.Acks()) }).Should(Equal(perRoom * len(rooms)))
				for _, r := range rooms {
					Eventually(ctx, func() int { return len(c.Messages(r)) }).Should(Equal(total))
				}
			}
			for _, r := range rooms {
				ref := cs[0].Messages(r)
				Expect(chattest.Gapless(ref, 1)).To(Succeed())
				for _, c := range cs[1:] {
					got := c.Messages(r)
					for i := range ref {
						Expect(got[i].GetSeq()).To(Equal(ref[i].GetSeq()))
						Expect(got[i].GetClientMsgId()).To(Equal(ref[i].GetClientMsgId()))
						Expect(got[i].GetSender()).To(Equal(ref[i].GetSender()))
					}
				}
				last := map[string]uint64{}
				for _, m := range ref {
					Expect(m.GetSenderSeq()).To(Equal(last[m.GetSender()]+1), "sender %s order in %s", m.GetSender(), r)
					last[m.GetSender()] = m.GetSenderSeq()
					Expect(m.GetReplay()).To(BeFalse())
					Expect(m.GetServerUnixNanos()).To(BeNumerically(">", 0))
				}
			}
			// each ack carries the seq its message got
			for _, c := range cs {
				seqs := map[string]uint64{}
				for _, r := range rooms {
					for _, m := range c.Messages(r) {
						if m.GetSender() == c.User {
							seqs[r+"/"+m.GetClientMsgId()] = m.GetSeq()
						}
					}
				}
				for _, a := range c.Acks() {
					Expect(a.GetDuplicate()).To(BeFalse())
					Expect(a.GetSeq()).To(Equal(seqs[a.GetRoom()+"/"+a.GetClientMsgId()]))
				}
			}
			Expect(metricSum(ts.m.Committed)).To(BeEquivalentTo(total * len(rooms)))
			for _, c := range cs {
				Expect(c.CloseAndWait()).To(Succeed())
			}
		},
		Entry("memory store (commit inside Append)", false, SpecTimeout(60*time.Second)),
		Entry("asynchronous store (commit on a writer goroutine)", true, SpecTimeout(60*time.Second)),
	)

	It("acks and broadcasts only after the store commit, and catches a resend still in flight", func(ctx SpecContext) {
		gs := newGatedStore()
		ts := startServer(testConfig(), gs, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a, b := chattest.Connect(GinkgoT(), cc, "alice"), chattest.Connect(GinkgoT(), cc, "bob")
		a.Join("lobby")
		b.Join("lobby")
		a.Send(chattest.SendEv("lobby", "m1", 1, "hi"))
		a.Send(chattest.SendEv("lobby", "m1", 1, "hi")) // resend before commit
		Eventually(ctx, gs.pending).Should(Equal(1))
		// A marker on another room shows the stream processed both sends.
		a.Join("other")
		Consistently(func() int { return len(a.Acks()) + len(b.Messages("lobby")) }).
			WithTimeout(200 * time.Millisecond).Should(BeZero())
		gs.release()
		Eventually(ctx, func() int { return len(a.Acks()) }).Should(Equal(2))
		acks := a.Acks()
		Expect(acks[0]).To(SatisfyAll(
			WithTransform((*chatv1.Ack).GetSeq, BeEquivalentTo(1)),
			WithTransform((*chatv1.Ack).GetDuplicate, BeFalse())))
		Expect(acks[1]).To(SatisfyAll(
			WithTransform((*chatv1.Ack).GetSeq, BeEquivalentTo(1)),
			WithTransform((*chatv1.Ack).GetDuplicate, BeTrue())))
		Eventually(ctx, func() int { return len(b.Messages("lobby")) }).Should(Equal(1))
		// later sends go through the open gate as usual
		a.Send(chattest.SendEv("lobby", "m2", 2, "again"))
		Eventually(ctx, func() int { return len(b.Messages("lobby")) }).Should(Equal(2))
		Expect(chattest.Gapless(b.Messages("lobby"), 1)).To(Succeed())
		Expect(a.CloseAndWait()).To(Succeed())
		Expect(b.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("does not store a committed resend twice: duplicate ack with the original seq", func(ctx SpecContext) {
		ts := startServer(testConfig(), nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a, b := chattest.Connect(GinkgoT(), cc, "alice"), chattest.Connect(GinkgoT(), cc, "bob")
		a.Join("lobby")
		b.Join("lobby")
		a.Send(chattest.SendEv("lobby", "x", 1, "one"))
		b.Send(chattest.SendEv("lobby", "y", 1, "two"))
		Eventually(ctx, func() int { return len(a.Messages("lobby")) }).Should(Equal(2))
		first := a.Acks()[0].GetSeq()
		a.Send(chattest.SendEv("lobby", "x", 1, "one"))
		// the same id from another sender is a different message
		b.Send(chattest.SendEv("lobby", "x", 2, "three"))
		Eventually(ctx, func() int { return len(a.Acks()) }).Should(Equal(2))
		Expect(a.Acks()[1].GetDuplicate()).To(BeTrue())
		Expect(a.Acks()[1].GetSeq()).To(Equal(first))
		Eventually(ctx, func() int { return len(a.Messages("lobby")) }).Should(Equal(3))
		Consistently(func() int { return len(a.Messages("lobby")) }).WithTimeout(100 * time.Millisecond).Should(Equal(3))
		Expect(chattest.Gapless(a.Messages("lobby"), 1)).To(Succeed())
		// a new stream of the same user resending (reconnect) is caught too
		a2 := chattest.Connect(GinkgoT(), cc, "alice")
		a2.Join("lobby")
		a2.Send(chattest.SendEv("lobby", "x", 1, "one"))
		Eventually(ctx, func() int { return len(a2.Acks()) }).Should(Equal(1))
		Expect(a2.Acks()[0].GetDuplicate()).To(BeTrue())
		Expect(a2.Acks()[0].GetSeq()).To(Equal(first))
		for _, c := range []*chattest.Client{a, a2, b} {
			Expect(c.CloseAndWait()).To(Succeed())
		}
	}, SpecTimeout(30*time.Second))

	It("refuses a sender_session's Send that would follow a later one of the session (FAILED_PRECONDITION), and acks its resends as duplicates", func(ctx SpecContext) {
		ts := startServer(testConfig(), nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("lobby")
		a.Send(sessionSend("lobby", "m2", 2, "s1"))
		a.Send(sessionSend("lobby", "m1", 1, "s1"))
		a.Send(sessionSend("lobby", "m2", 2, "s1"))
		a.Send(sessionSend("lobby", "n1", 1, "s2")) // another numbering
		a.Send(chattest.SendEv("lobby", "x1", 1, "no session"))
		Eventually(ctx, func() int { return len(a.Acks()) + len(a.Errors()) }).Should(Equal(5))
		Expect(a.Errors()).To(ConsistOf(SatisfyAll(HaveField("Code", BeEquivalentTo(codes.FailedPrecondition)),
			HaveField("Field", Equal("send.sender_seq")), HaveField("ClientMsgId", Equal("m1")))))
		Expect(a.Acks()).To(HaveExactElements(
			SatisfyAll(HaveField("ClientMsgId", Equal("m2")), HaveField("Seq", BeEquivalentTo(1)), HaveField("Duplicate", BeFalse())),
			SatisfyAll(HaveField("ClientMsgId", Equal("m2")), HaveField("Seq", BeEquivalentTo(1)), HaveField("Duplicate", BeTrue())),
			SatisfyAll(HaveField("ClientMsgId", Equal("n1")), HaveField("Seq", BeEquivalentTo(2))),
			SatisfyAll(HaveField("ClientMsgId", Equal("x1")), HaveField("Seq", BeEquivalentTo(3)))))
		a.Send(sessionSend("lobby", "z", 0, "s1"))
		Eventually(ctx, func() int { return len(a.Errors()) }).Should(Equal(2))
		Expect(a.Errors()[1]).To(SatisfyAll(HaveField("Code", BeEquivalentTo(codes.InvalidArgument)), HaveField("Field", Equal("send.sender_seq"))))
		Expect(a.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("continues seq after a restart over the same store", func(ctx SpecContext) {
		st := store.NewMemory(0)
		ts1 := newTestServer(testConfig(), st, nil)
		cc1 := chattest.Dial(GinkgoT(), ts1.addr)
		a := chattest.Connect(GinkgoT(), cc1, "alice")
		a.Join("lobby")
		for i := 1; i <= 5; i++ {
			a.Send(chattest.SendEv("lobby", fmt.Sprint(i), uint64(i), "x"))
		}
		Eventually(ctx, func() int { return len(a.Acks()) }).Should(Equal(5))
		Expect(a.CloseAndWait()).To(Succeed())
		ts1.stop()

		ts2 := startServer(testConfig(), st, nil)
		b := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ts2.addr), "bob")
		Expect(b.Join("lobby").GetHeadSeq()).To(BeEquivalentTo(5))
		b.Send(chattest.SendEv("lobby", "after", 1, "y"))
		Eventually(ctx, func() []*chatv1.Ack { return b.Acks() }).Should(ContainElement(
			WithTransform((*chatv1.Ack).GetSeq, BeEquivalentTo(6))))
		Expect(b.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("resumes at the seam under concurrent sends: replay then live, no gap, no duplicate", func(ctx SpecContext) {
		// Each sender's stream gets every message and its own acks, ~1,200
		// events in a burst: over the default queue bound a sender is cut as
		// a slow consumer when its writer gets little CPU (GOMAXPROCS=1, a
		// loaded CI machine), which is not what this spec is about.
		cfg := testConfig()
		cfg.QueueMessages = 4096
		ts := startServer(cfg, nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		const senders, each = 3, 300
		ss := make([]*chattest.Client, senders)
		for i := range ss {
			ss[i] = chattest.Connect(GinkgoT(), cc, fmt.Sprintf("s%d", i))
			ss[i].Join("busy")
		}
		var wg sync.WaitGroup
		for i, s := range ss {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for k := 1; k <= each; k++ {
					Expect(s.Stream.Send(chattest.SendEv("busy", fmt.Sprint(k), uint64(k), fmt.Sprintf("s%d-%d", i, k)))).To(Succeed())
					if k%50 == 0 {
						time.Sleep(time.Millisecond) // let resumers land mid-stream
					}
				}
			}()
		}
		// resumers join while the senders run, each from a different position
		var resumers []*chattest.Client
		var afters []uint64
		for k := 0; k < 6; k++ {
			Eventually(ctx, func() int { return len(ss[0].Messages("busy")) }).Should(BeNumerically(">=", 40*(k+1)))
			after := uint64(20 * k)
			r := chattest.Connect(GinkgoT(), cc, fmt.Sprintf("r%d", k))
			j := r.JoinFrom("busy", &after)
			Expect(j.GetResumeComplete()).To(BeTrue())
			Expect(j.GetHeadSeq()).To(BeNumerically(">=", after))
			if j.GetHeadSeq() > after {
				Expect(j.GetReplayFrom()).To(Equal(after + 1))
			}
			resumers = append(resumers, r)
			afters = append(afters, after)
		}
		wg.Wait()
		total := senders * each
		for i, r := range resumers {
			Eventually(ctx, func() int { return len(r.Messages("busy")) }).WithTimeout(10 * time.Second).Should(BeNumerically(">=", total-int(afters[i])))
			msgs := r.Messages("busy")
			Expect(msgs).To(HaveLen(total - int(afters[i])))
			Expect(chattest.Gapless(msgs, afters[i]+1)).To(Succeed())
			head := r.Joined()[0].GetHeadSeq()
			for _, m := range msgs {
				Expect(m.GetReplay()).To(Equal(m.GetSeq() <= head), "seq %d head %d", m.GetSeq(), head)
			}
		}
		Consistently(func() int { return len(resumers[0].Messages("busy")) }).
			WithTimeout(100 * time.Millisecond).Should(Equal(total - int(afters[0])))
		for _, c := range append(ss, resumers...) {
			Expect(c.CloseAndWait()).To(Succeed())
		}
	}, SpecTimeout(60*time.Second))

	It("says resume_complete=false when asked for more than it retains", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.History = 10
		ts := startServer(cfg, nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a := chattest.Connect(GinkgoT(), cc, "alice")
		a.Join("lobby")
		for i := 1; i <= 25; i++ {
			a.Send(chattest.SendEv("lobby", fmt.Sprint(i), uint64(i), "x"))
		}
		Eventually(ctx, func() int { return len(a.Acks()) }).Should(Equal(25))

		old := chattest.Connect(GinkgoT(), cc, "bob")
		j := old.JoinFrom("lobby", chattest.Ptr(uint64(2)))
		Expect(j.GetResumeComplete()).To(BeFalse())
		Expect(j.GetOldestRetainedSeq()).To(BeEquivalentTo(16))
		Expect(j.GetReplayFrom()).To(BeEquivalentTo(16))
		Expect(j.GetHeadSeq()).To(BeEquivalentTo(25))
		Expect(j.GetMembers()).To(ConsistOf("alice", "bob"))
		Eventually(ctx, func() int { return len(old.Messages("lobby")) }).Should(Equal(10))
		Expect(chattest.Gapless(old.Messages("lobby"), 16)).To(Succeed())

		recent := chattest.Connect(GinkgoT(), cc, "carol")
		j = recent.JoinFrom("lobby", chattest.Ptr(uint64(20)))
		Expect(j.GetResumeComplete()).To(BeTrue())
		Expect(j.GetReplayFrom()).To(BeEquivalentTo(21))
		Eventually(ctx, func() int { return len(recent.Messages("lobby")) }).Should(Equal(5))
		Expect(recent.Messages("lobby")[0].GetReplay()).To(BeTrue())

		live := chattest.Connect(GinkgoT(), cc, "dave")
		j = live.Join("lobby")
		Expect(j.GetResumeComplete()).To(BeTrue())
		Expect(j.GetReplayFrom()).To(BeZero())
		Expect(j.GetHeadSeq()).To(BeEquivalentTo(25))

		upToDate := chattest.Connect(GinkgoT(), cc, "erin")
		j = upToDate.JoinFrom("lobby", chattest.Ptr(uint64(25)))
		Expect(j.GetResumeComplete()).To(BeTrue())
		Expect(j.GetReplayFrom()).To(BeZero())

		a.Send(chattest.SendEv("lobby", "26", 26, "live"))
		for _, c := range []*chattest.Client{old, recent, live, upToDate} {
			Eventually(ctx, func() []*chatv1.Message { return c.Messages("lobby") }).Should(ContainElement(SatisfyAll(
				WithTransform((*chatv1.Message).GetSeq, BeEquivalentTo(26)),
				WithTransform((*chatv1.Message).GetReplay, BeFalse()))))
		}
		for _, c := range []*chattest.Client{a, old, recent, live, upToDate} {
			Expect(c.CloseAndWait()).To(Succeed())
		}
	}, SpecTimeout(30*time.Second))

	It("reports presence and relays typing, throttled per user per room", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.TypingInterval = time.Hour
		ts := startServer(cfg, nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a, b := chattest.Connect(GinkgoT(), cc, "alice"), chattest.Connect(GinkgoT(), cc, "bob")
		Expect(a.Join("lobby").GetMembers()).To(Equal([]string{"alice"}))
		Expect(b.Join("lobby").GetMembers()).To(Equal([]string{"alice", "bob"}))
		Eventually(ctx, a.Presences).Should(ConsistOf(SatisfyAll(
			WithTransform((*chatv1.Presence).GetUser, Equal("bob")),
			WithTransform((*chatv1.Presence).GetKind, Equal(chatv1.Presence_KIND_JOINED)))))

		for i := 0; i < 5; i++ {
			b.Send(chattest.TypingEv("lobby", true))
		}
		b.Send(chattest.SendEv("lobby", "marker", 1, "after typing"))
		Eventually(ctx, func() int { return len(a.Messages("lobby")) }).Should(Equal(1))
		// everything bob's typings caused was queued before the marker
		Expect(a.Typings()).To(ConsistOf(SatisfyAll(
			WithTransform((*chatv1.TypingNotice).GetUser, Equal("bob")),
			WithTransform((*chatv1.TypingNotice).GetActive, BeTrue()))))
		Eventually(ctx, func() int { return len(b.Messages("lobby")) }).Should(Equal(1))
		Expect(b.Typings()).To(BeEmpty(), "typing is relayed to others only")

		// a second stream of bob arriving is not news; bob leaving on both is
		b2 := chattest.Connect(GinkgoT(), cc, "bob")
		b2.Join("lobby")
		b2.Send(chattest.LeaveEv("lobby"))
		b.Send(chattest.LeaveEv("lobby"))
		Eventually(ctx, func() int { return len(a.Presences()) }).Should(Equal(2))
		Expect(a.Presences()[1].GetKind()).To(Equal(chatv1.Presence_KIND_LEFT))
		Eventually(ctx, func() []*chatv1.ServerEvent { return b.Events() }).Should(ContainElement(
			WithTransform((*chatv1.ServerEvent).GetLeft, Not(BeNil()))))
		for _, c := range []*chattest.Client{a, b, b2} {
			Expect(c.CloseAndWait()).To(Succeed())
		}
	}, SpecTimeout(30*time.Second))

	DescribeTable("answers bad input with an Error event naming the field, and keeps the stream open",
		func(ctx SpecContext, setup []*chatv1.ClientEvent, bad []byte, code codes.Code, field string) {
			cfg := testConfig()
			cfg.MaxBodyBytes = 16
			ts := startServer(cfg, nil, nil)
			cc := chattest.Dial(GinkgoT(), ts.addr)
			rs, err := openRaw(ctx, cc, "alice")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(rs.cancel)
			for _, ev := range setup {
				Expect(rs.send(mustMarshal(ev))).To(Succeed())
			}
			Expect(rs.send(bad)).To(Succeed())
			Expect(rs.send(mustMarshal(chattest.JoinEv("probe")))).To(Succeed())
			var got *chatv1.Error
			for {
				ev, err := rs.recv()
				Expect(err).NotTo(HaveOccurred())
				if e := ev.GetError(); e != nil {
					Expect(got).To(BeNil(), "only one Error expected, second: %v", e)
					got = e
				}
				if j := ev.GetJoined(); j != nil && j.GetRoom() == "probe" {
					break // the stream survived the bad event
				}
			}
			Expect(got).NotTo(BeNil())
			Expect(codes.Code(got.GetCode())).To(Equal(code))
			Expect(got.GetField()).To(Equal(field))
			Expect(got.GetMessage()).NotTo(BeEmpty())
			Expect(rs.cs.CloseSend()).To(Succeed())
			_, err = rs.recv()
			Expect(err).To(MatchError(ContainSubstring("EOF")))
		},
		Entry("empty event", nil, []byte{}, codes.InvalidArgument, "event"),
		Entry("unknown event field", nil, []byte{0x4a, 0x01, 'x'}, codes.InvalidArgument, "event"),
		Entry("empty join room", nil, mustMarshal(chattest.JoinEv("")), codes.InvalidArgument, "join.room"),
		Entry("bad join room", nil, mustMarshal(chattest.JoinEv("a b")), codes.InvalidArgument, "join.room"),
		Entry("long join room", nil, mustMarshal(chattest.JoinEv(strings.Repeat("a", 65))), codes.InvalidArgument, "join.room"),
		Entry("join twice", []*chatv1.ClientEvent{chattest.JoinEv("r")}, mustMarshal(chattest.JoinEv("r")), codes.FailedPrecondition, "join.room"),
		Entry("leave not joined", nil, mustMarshal(chattest.LeaveEv("r")), codes.FailedPrecondition, "leave.room"),
		Entry("bad leave room", nil, mustMarshal(chattest.LeaveEv("r/")), codes.InvalidArgument, "leave.room"),
		Entry("typing not joined", nil, mustMarshal(chattest.TypingEv("r", true)), codes.FailedPrecondition, "typing.room"),
		Entry("send not joined", nil, mustMarshal(chattest.SendEv("r", "1", 1, "hi")), codes.FailedPrecondition, "send.room"),
		Entry("send bad room", nil, mustMarshal(chattest.SendEv("", "1", 1, "hi")), codes.InvalidArgument, "send.room"),
		Entry("send empty id", []*chatv1.ClientEvent{chattest.JoinEv("r")}, mustMarshal(chattest.SendEv("r", "", 1, "hi")), codes.InvalidArgument, "send.client_msg_id"),
		Entry("send long id", []*chatv1.ClientEvent{chattest.JoinEv("r")}, mustMarshal(chattest.SendEv("r", strings.Repeat("i", 129), 1, "hi")), codes.InvalidArgument, "send.client_msg_id"),
		Entry("send long sender_session", []*chatv1.ClientEvent{chattest.JoinEv("r")}, mustMarshal(sessionSend("r", "1", 1, strings.Repeat("s", 65))), codes.InvalidArgument, "send.sender_session"),
		Entry("send empty body", []*chatv1.ClientEvent{chattest.JoinEv("r")}, mustMarshal(chattest.SendEv("r", "1", 1, "")), codes.InvalidArgument, "send.body"),
		Entry("send oversized body", []*chatv1.ClientEvent{chattest.JoinEv("r")}, mustMarshal(chattest.SendEv("r", "1", 1, strings.Repeat("b", 17))), codes.InvalidArgument, "send.body"),
	)

	DescribeTable("ends the stream with INVALID_ARGUMENT on undecodable bytes, never INTERNAL",
		func(ctx SpecContext, bad []byte) {
			ts := startServer(testConfig(), nil, nil)
			rs, err := openRaw(ctx, chattest.Dial(GinkgoT(), ts.addr), "alice")
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(rs.cancel)
			Expect(rs.send(mustMarshal(chattest.JoinEv("r")))).To(Succeed())
			Expect(rs.send(bad)).To(Succeed())
			for {
				_, err = rs.recv()
				if err != nil {
					break
				}
			}
			Expect(codeOf(err)).To(Equal(codes.InvalidArgument), "%v", err)
			Expect(err.Error()).To(ContainSubstring("malformed message"))
		},
		Entry("garbage", []byte{0xff, 0xff, 0xff, 0xff}),
		Entry("truncated field", []byte{0x1a, 0x10, 0x0a}),
		Entry("invalid UTF-8 in a string", []byte{0x1a, 0x07, 0x0a, 0x01, 'r', 0x22, 0x02, 0xc3, 0x28}),
	)

	It("bounds rooms per stream", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.MaxRoomsPerStream = 3
		ts := startServer(cfg, nil, nil)
		a := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ts.addr), "alice")
		for _, r := range []string{"a", "b", "c"} {
			a.Join(r)
		}
		a.Send(chattest.JoinEv("d"))
		Eventually(ctx, a.Errors).Should(ConsistOf(SatisfyAll(
			WithTransform((*chatv1.Error).GetCode, BeEquivalentTo(codes.ResourceExhausted)),
			WithTransform((*chatv1.Error).GetField, Equal("join.room")),
			WithTransform((*chatv1.Error).GetRoom, Equal("d")))))
		a.Send(chattest.LeaveEv("a"))
		Expect(a.Join("d").GetRoom()).To(Equal("d"))
		Expect(a.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("refuses Sends over the rate limit with an Error event and keeps the stream", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.SendRate, cfg.SendBurst, cfg.FloodFactor = 0.001, 3, 0
		ts := startServer(cfg, nil, nil)
		a := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ts.addr), "alice")
		a.Join("lobby")
		for i := 1; i <= 10; i++ {
			a.Send(chattest.SendEv("lobby", fmt.Sprint(i), uint64(i), "x"))
		}
		Eventually(ctx, func() int { return len(a.Acks()) + len(a.Errors()) }).Should(Equal(10))
		Expect(a.Acks()).To(HaveLen(3))
		for _, e := range a.Errors() {
			Expect(e.GetCode()).To(BeEquivalentTo(codes.ResourceExhausted))
			Expect(e.GetField()).To(Equal("send"))
			Expect(e.GetClientMsgId()).NotTo(BeEmpty())
			Expect(e.GetMessage()).To(ContainSubstring("rate limit"))
		}
		Expect(metricSum(ts.m.RateLimited)).To(BeEquivalentTo(7))
		Expect(a.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("ends a stream that keeps sending far over the limit with RESOURCE_EXHAUSTED", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.SendRate, cfg.SendBurst, cfg.FloodFactor, cfg.FloodWindow = 0.001, 2, 5, time.Hour
		ts := startServer(cfg, nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a := chattest.Connect(GinkgoT(), cc, "flood")
		a.Join("lobby")
		for i := 1; i <= 20 && !a.Ended(); i++ {
			_ = a.Stream.Send(chattest.SendEv("lobby", fmt.Sprint(i), uint64(i), "x"))
		}
		Eventually(ctx, a.Done()).Should(BeClosed())
		Expect(codeOf(a.Err())).To(Equal(codes.ResourceExhausted))
		Expect(a.Err().Error()).To(ContainSubstring("far over the rate limit"))
		// 2 x 5 refusals tolerated; the 11th is answered, then the stream ends
		Expect(a.Errors()).To(HaveLen(11))
	}, SpecTimeout(30*time.Second))

	It("cuts a reader that never reads with RESOURCE_EXHAUSTED while the others receive everything", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.QueueMessages = 256
		ts := startServer(cfg, nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		// a fixed 64 KiB window, so the transport cannot absorb the backlog
		slowCC := chattest.Dial(GinkgoT(), ts.addr, grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
		slow := chattest.Open(GinkgoT(), slowCC, "slow")
		slow.Send(chattest.JoinEv("lobby"))
		Eventually(ctx, func() float64 { return metricSum(ts.m.Members) }).Should(BeEquivalentTo(1))
		fast := []*chattest.Client{chattest.Connect(GinkgoT(), cc, "f1"), chattest.Connect(GinkgoT(), cc, "f2")}
		for _, f := range fast {
			f.Join("lobby")
		}
		sender := chattest.Connect(GinkgoT(), cc, "sender")
		sender.Join("lobby")
		const n = 1500
		body := strings.Repeat("z", 400)
		for i := 1; i <= n; i++ {
			sender.Send(chattest.SendEv("lobby", fmt.Sprint(i), uint64(i), body))
			if i%50 == 0 {
				// honest readers keep up (a closed loop, so that they never
				// fall 256 behind even under -race); the slow one does not
				for _, c := range append(fast, sender) {
					Eventually(ctx, func() int { return len(c.Messages("lobby")) }).Should(BeNumerically(">=", i-50))
				}
			}
		}
		for _, c := range append(fast, sender) {
			Eventually(ctx, func() int { return len(c.Messages("lobby")) }).Should(Equal(n))
			Expect(chattest.Gapless(c.Messages("lobby"), 1)).To(Succeed())
		}
		Eventually(ctx, func() float64 { return metricSum(ts.m.SlowConsumerCuts) }).Should(BeEquivalentTo(1))
		// the slow reader finally reads: what was sent, then the status
		slow.StartReading()
		Eventually(ctx, slow.Done()).Should(BeClosed())
		err := slow.Err()
		Expect(codeOf(err)).To(Equal(codes.ResourceExhausted), "%v", err)
		Expect(err.Error()).To(SatisfyAll(ContainSubstring("slow consumer"),
			ContainSubstring("256 messages"), ContainSubstring("resume from seq")))
		got := slow.Messages("lobby")
		Expect(len(got)).To(BeNumerically("<", n))
		Expect(chattest.Gapless(got, 1)).To(Succeed())
		var resumeAt int
		_, scanErr := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "resume from seq"):], "resume from seq %d", &resumeAt)
		Expect(scanErr).NotTo(HaveOccurred())
		Expect(resumeAt).To(SatisfyAll(BeNumerically(">", 0), BeNumerically("<=", len(got))),
			"resuming after the position the status names loses nothing")
		Eventually(ctx, func() float64 { return metricSum(ts.m.Members) }).Should(BeEquivalentTo(3))
		for _, c := range append(fast, sender) {
			Expect(c.CloseAndWait()).To(Succeed())
		}
	}, SpecTimeout(60*time.Second))

	It("denies a Join the ACL refuses with PERMISSION_DENIED", func(ctx SpecContext) {
		ts := startServer(testConfig(), nil, denyACL{})
		cc := chattest.Dial(GinkgoT(), ts.addr)
		bob := chattest.Connect(GinkgoT(), cc, "bob")
		bob.Send(chattest.JoinEv("secret"))
		Eventually(ctx, bob.Errors).Should(ConsistOf(SatisfyAll(
			WithTransform((*chatv1.Error).GetCode, BeEquivalentTo(codes.PermissionDenied)),
			WithTransform((*chatv1.Error).GetField, Equal("join.room")))))
		bob.Send(chattest.SendEv("secret", "1", 1, "let me in"))
		Eventually(ctx, func() int { return len(bob.Errors()) }).Should(Equal(2))
		Expect(bob.Errors()[1].GetCode()).To(BeEquivalentTo(codes.FailedPrecondition))
		alice := chattest.Connect(GinkgoT(), cc, "alice")
		Expect(alice.Join("secret").GetMembers()).To(Equal([]string{"alice"}))
		Expect(bob.Join("public").GetRoom()).To(Equal("public"))
		Expect(alice.CloseAndWait()).To(Succeed())
		Expect(bob.CloseAndWait()).To(Succeed())
	}, SpecTimeout(30*time.Second))

	It("drains: refuses new streams, acks in-flight commits, then ends streams with UNAVAILABLE", func(ctx SpecContext) {
		gs := newGatedStore()
		ts := startServer(testConfig(), gs, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		a, b := chattest.Connect(GinkgoT(), cc, "alice"), chattest.Connect(GinkgoT(), cc, "bob")
		a.Join("lobby")
		b.Join("lobby")
		a.Send(chattest.SendEv("lobby", "m1", 1, "in flight"))
		Eventually(ctx, gs.pending).Should(Equal(1))
		drained := make(chan error, 1)
		go func() { drained <- ts.svc.Drain(ctx) }()
		Eventually(ctx, func() float64 { return metricSum(ts.m.ShuttingDown) }).Should(BeEquivalentTo(1))
		late := chattest.Connect(GinkgoT(), cc, "late")
		Eventually(ctx, late.Done()).Should(BeClosed())
		Expect(codeOf(late.Err())).To(Equal(codes.Unavailable))
		Consistently(a.Done()).WithTimeout(100 * time.Millisecond).ShouldNot(BeClosed())
		gs.release()
		Eventually(ctx, drained).Should(Receive(BeNil()))
		for _, c := range []*chattest.Client{a, b} {
			Eventually(ctx, c.Done()).Should(BeClosed())
			Expect(codeOf(c.Err())).To(Equal(codes.Unavailable))
			Expect(c.Err().Error()).To(ContainSubstring("server shutting down"))
		}
		Expect(a.Acks()).To(HaveLen(1))
		Expect(a.Acks()[0].GetSeq()).To(BeEquivalentTo(1))
	}, SpecTimeout(30*time.Second))

	It("forces streams closed when the drain deadline passes", func(ctx SpecContext) {
		gs := newGatedStore()
		ts := startServer(testConfig(), gs, nil)
		a := chattest.Connect(GinkgoT(), chattest.Dial(GinkgoT(), ts.addr), "alice")
		a.Join("lobby")
		a.Send(chattest.SendEv("lobby", "m1", 1, "never committed"))
		Eventually(ctx, gs.pending).Should(Equal(1))
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		Expect(ts.svc.Drain(dctx)).To(MatchError(context.DeadlineExceeded))
		Eventually(ctx, a.Done()).Should(BeClosed())
		Expect(codeOf(a.Err())).To(Equal(codes.Unavailable))
	}, SpecTimeout(30*time.Second))

	It("releases everything a stream held, however it ended", func(ctx SpecContext) {
		cfg := testConfig()
		cfg.SendRate = 1000
		ts := startServer(cfg, nil, nil)
		cc := chattest.Dial(GinkgoT(), ts.addr)
		eof := chattest.Connect(GinkgoT(), cc, "eof")
		canceled := chattest.Connect(GinkgoT(), cc, "canceled")
		bad, err := openRaw(ctx, cc, "bad")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(bad.cancel)
		for _, c := range []*chattest.Client{eof, canceled} {
			c.Join("a")
			c.Join("b")
			c.Send(chattest.SendEv("a", "1", 1, "x"))
		}
		Expect(bad.send(mustMarshal(chattest.JoinEv("a")))).To(Succeed())
		Eventually(ctx, func() float64 { return metricSum(ts.m.Members) }).Should(BeEquivalentTo(5))
		Expect(ts.svc.rooms.count()).To(Equal(2))
		Expect(ts.svc.lim.Keys()).To(Equal(3))

		Expect(eof.CloseAndWait()).To(Succeed())
		canceled.Cancel()
		Expect(bad.send([]byte{0xff})).To(Succeed())
		Eventually(ctx, canceled.Done()).Should(BeClosed())
		Expect(codeOf(canceled.Err())).To(Equal(codes.Canceled))

		Eventually(ctx, func() float64 { return metricSum(ts.m.Members) }).Should(BeZero())
		Eventually(ctx, func() float64 { return metricSum(ts.m.ActiveStreams) }).Should(BeZero())
		Eventually(ctx, ts.svc.rooms.count).Should(BeZero())
		Eventually(ctx, ts.svc.lim.Keys).Should(BeZero())
		Expect(metricSum(ts.m.QueueDepth)).To(BeZero())
	}, SpecTimeout(30*time.Second))

	It("refuses a stream without an authenticated user", func(ctx SpecContext) {
		svc, err := New(testConfig(), store.NewMemory(0), metrics.Discard(), nil, nil)
		Expect(err).NotTo(HaveOccurred())
		err = svc.connect(noUserStream{})
		Expect(codeOf(err)).To(Equal(codes.Unauthenticated))
	})
})
