package check_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	ev "github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
)

// noDecode leaves a checker's parameters at their defaults.
func noDecode(any) error { return nil }

// run feeds events to a fresh checker and returns its verdict.
func run(name string, decode func(any) error, env check.Env, events []ev.Event) check.Verdict {
	c, err := check.New(name, decode)
	Expect(err).NotTo(HaveOccurred())
	if s, ok := c.(check.Starter); ok {
		Expect(s.Start(context.Background(), env)).To(Succeed())
	}
	for i := range events {
		c.Observe(&events[i])
	}
	return c.Verdict(context.Background(), env)
}

// chat builds chat event streams for two members of room "r".
type chat struct{ evs []ev.Event }

// at spaces events one second apart, so no-lost-acks' default 2s grace
// covers only the last two events before a membership ends.
func (c *chat) at() time.Duration { return time.Duration(len(c.evs)) * time.Second }

func (c *chat) join(client int, head uint64) *chat {
	c.evs = append(c.evs, ev.Event{Kind: ev.Join, At: c.at(), Client: client, User: user(client), Scope: "r", Seq: head})
	return c
}
func (c *chat) resume(client int, after, head, from uint64, complete bool) *chat {
	c.evs = append(c.evs, ev.Event{Kind: ev.Join, At: c.at(), Client: client, User: user(client), Scope: "r", Seq: head,
		HasResume: true, ResumeAfter: after, ReplayFrom: from, Complete: complete})
	return c
}
func (c *chat) send(client int, id string, sseq uint64) *chat {
	c.evs = append(c.evs, ev.Event{Kind: ev.Send, At: c.at(), Client: client, User: user(client), Scope: "r", MsgID: id, SenderSeq: sseq})
	return c
}
func (c *chat) ack(client int, id string, sseq, seq uint64) *chat {
	c.evs = append(c.evs, ev.Event{Kind: ev.Ack, At: c.at(), Client: client, User: user(client), Scope: "r", MsgID: id, SenderSeq: sseq, Seq: seq})
	return c
}
func (c *chat) deliver(client int, seq uint64, sender int, id string, sseq uint64) *chat {
	c.evs = append(c.evs, ev.Event{Kind: ev.Deliver, At: c.at(), Client: client, User: user(client), Scope: "r", Seq: seq,
		Sender: user(sender), MsgID: id, SenderSeq: sseq, Latency: time.Millisecond})
	return c
}
func (c *chat) disconnect(client int, code codes.Code) *chat {
	c.evs = append(c.evs, ev.Event{Kind: ev.Disconnect, At: c.at(), Client: client, User: user(client), Code: code})
	return c
}

func user(i int) string { return []string{"ann", "bob", "cid"}[i] }

// clean: ann and bob join at 0; ann sends a1,a2, bob b1; both see 1..3.
func clean() *chat {
	c := &chat{}
	c.join(0, 0).join(1, 0)
	c.send(0, "a1", 1).ack(0, "a1", 1, 1)
	c.send(1, "b1", 1).ack(1, "b1", 1, 2)
	c.send(0, "a2", 2).ack(0, "a2", 2, 3)
	for _, m := range []int{0, 1} {
		c.deliver(m, 1, 0, "a1", 1).deliver(m, 2, 1, "b1", 1).deliver(m, 3, 0, "a2", 2)
	}
	return c
}

var _ = Describe("chat ordering checkers", func() {
	DescribeTable("pass on a clean history",
		func(name string) {
			v := run(name, noDecode, nil, clean().evs)
			Expect(v.Status).To(Equal(check.Pass), v.Summary)
			Expect(v.Violations).To(BeZero())
		},
		Entry("total-order", "total-order"),
		Entry("no-gaps", "no-gaps"),
		Entry("no-duplicates", "no-duplicates"),
		Entry("no-lost-acks", "no-lost-acks"),
		Entry("sender-fifo", "sender-fifo"),
		Entry("realtime-order", "realtime-order"),
	)

	DescribeTable("catch each anomaly with evidence",
		func(name string, build func() *chat, seq uint64, detail string) {
			v := run(name, noDecode, nil, build().evs)
			Expect(v.Status).To(Equal(check.Fail), v.Summary)
			Expect(v.Violations).To(BeNumerically(">=", 1))
			Expect(v.Evidence).NotTo(BeEmpty())
			Expect(v.Evidence[0].Scope).To(Equal("r"))
			Expect(v.Evidence[0].Seq).To(Equal(seq))
			Expect(v.Evidence[0].Detail).To(ContainSubstring(detail))
		},
		Entry("inconsistent order: two members see different messages at seq 2", "total-order", func() *chat {
			c := &chat{}
			c.join(0, 0).join(1, 0)
			c.deliver(0, 1, 0, "a1", 1).deliver(0, 2, 1, "b1", 1)
			c.deliver(1, 1, 0, "a1", 1).deliver(1, 2, 0, "a2", 2)
			return c
		}, uint64(2), "bob/b1"),
		Entry("gap: bob skips seq 2", "no-gaps", func() *chat {
			c := clean()
			c.evs = append(c.evs[:len(c.evs)-2], c.evs[len(c.evs)-1]) // drop bob's seq 2
			return c
		}, uint64(2), "never received seq 2 (1 message(s)) but received seq 3"),
		Entry("duplicate: a1 stored at two seqs", "no-duplicates", func() *chat {
			c := &chat{}
			c.join(0, 0)
			c.send(0, "a1", 1).ack(0, "a1", 1, 1).send(0, "a1", 1).ack(0, "a1", 1, 2)
			return c
		}, uint64(2), "stored twice: at seq 1 and seq 2"),
		Entry("duplicate delivery: ann receives seq 1 twice", "no-duplicates", func() *chat {
			c := &chat{}
			c.join(0, 0).deliver(0, 1, 1, "b1", 1).deliver(0, 2, 1, "b2", 2).deliver(0, 1, 1, "b1", 1)
			return c
		}, uint64(1), "received seq 1 twice"),
		Entry("lost ack: bob, present to the end, never gets acked seq 3", "no-lost-acks", func() *chat {
			c := clean()
			c.evs = c.evs[:len(c.evs)-1] // bob's seq 3 missing
			return c
		}, uint64(3), "ann/a2 acked at seq 3 at"),
		Entry("sender FIFO: ann's a2 ordered before a1", "sender-fifo", func() *chat {
			c := &chat{}
			c.join(0, 0).send(0, "a1", 1).send(0, "a2", 2).ack(0, "a2", 2, 1).ack(0, "a1", 1, 2)
			return c
		}, uint64(2), "ordered at seq 2, after a2"),
		Entry("real-time order: b1 acked before a1 was sent but got a higher seq", "realtime-order", func() *chat {
			c := &chat{}
			c.join(0, 0).join(1, 0)
			c.send(1, "b1", 1).ack(1, "b1", 1, 2)
			c.send(0, "a1", 1).ack(0, "a1", 1, 1)
			return c
		}, uint64(1), "bob/b1 was acked at seq 2"),
	)

	It("does not count a member whose stream broke as losing what came after", func() {
		c := clean()
		c.evs = c.evs[:len(c.evs)-1]
		c.disconnect(1, codes.Unavailable) // bob left after seq 2, by a fault
		v := run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
	})

	It("holds a member the harness cut off at the close grace only to what it had received", func() {
		late := func(field string) []ev.Event {
			c := &chat{}
			c.join(0, 0).join(1, 0)
			c.send(0, "a1", 1).ack(0, "a1", 1, 1).deliver(0, 1, 0, "a1", 1).deliver(1, 1, 0, "a1", 1)
			c.send(0, "a2", 2).ack(0, "a2", 2, 2).deliver(0, 2, 0, "a2", 2)
			c.send(0, "a3", 3).ack(0, "a3", 3, 3).deliver(0, 3, 0, "a3", 3)
			c.send(0, "a4", 4) // keeps bob's end more than the 2s grace after a2 and a3 were acked
			c.send(0, "a5", 5)
			c.evs = append(c.evs, ev.Event{Kind: ev.Disconnect, At: c.at(), Client: 1, User: user(1), Code: codes.DeadlineExceeded,
				Field: field, Latency: 5 * time.Second})
			return c.evs
		}
		v := run("no-lost-acks", noDecode, nil, late(ev.FieldCloseGrace))
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("1 membership(s) held only up to their last seq received"))
		// The same end with the server's own status is a cut too; without
		// either, bob is owed seqs 2 and 3.
		v = run("no-lost-acks", noDecode, nil, late(""))
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		evs := late("")
		evs[len(evs)-1].Code = codes.OK
		evs[len(evs)-1].Latency = time.Second // bob's CloseSend at 13s: owed what was acked by 11s
		v = run("no-lost-acks", noDecode, nil, evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(2))
		// The membership ends at the client's CloseSend, not at the
		// stream's end: with it at 9s (the end 5s later), bob is owed
		// only seq 2 (acked at 7s), not seq 3 (acked at 10s, after he said
		// he was done).
		evs[len(evs)-1].Latency = 5 * time.Second
		v = run("no-lost-acks", noDecode, nil, evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(1))
		Expect(v.Evidence[0].Seq).To(BeEquivalentTo(2), "%v", v.Evidence)
	})

	It("holds a member the server cut after a fault stopped its reading only to what it had received", func() {
		// bob's reading stops after seq 1 (a stop-reading fault); the server
		// cuts him as a slow consumer, which he only sees at the end of the
		// run, after seqs 2..4 were acked and delivered to ann.
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1).deliver(0, 1, 0, "a1", 1).deliver(1, 1, 0, "a1", 1)
		c.evs = append(c.evs, ev.Event{Kind: ev.Fault, At: c.at(), Client: 1, User: user(1), Detail: "stop-reading"})
		for i := uint64(2); i <= 4; i++ {
			id := fmt.Sprintf("a%d", i)
			c.send(0, id, i).ack(0, id, i, i).deliver(0, i, 0, id, i)
		}
		c.send(0, "a5", 5).send(0, "a6", 6).send(0, "a7", 7)
		c.evs = append(c.evs, ev.Event{Kind: ev.Disconnect, At: c.at(), Client: 1, User: user(1), Code: codes.ResourceExhausted,
			Detail: "slow consumer", Latency: time.Second})
		v := run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("each of 2 memberships"))
		// However it ends: a server may drop what it queued for a stream
		// whose client stopped reading and then said it was done.
		c.evs[len(c.evs)-1].Code = codes.OK
		v = run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		// Without the fault, a clean end owes bob seqs 2..4.
		var unfaulted []ev.Event
		for _, e := range c.evs {
			if e.Kind != ev.Fault {
				unfaulted = append(unfaulted, e)
			}
		}
		v = run("no-lost-acks", noDecode, nil, unfaulted)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(3))
		// A fault late in the run still holds bob to what was acked a
		// grace before it.
		late := append([]ev.Event(nil), unfaulted[:len(unfaulted)-1]...)
		late = append(late, ev.Event{Kind: ev.Fault, At: late[len(late)-1].At, Client: 1, User: user(1), Detail: "stop-reading"}, unfaulted[len(unfaulted)-1])
		v = run("no-lost-acks", noDecode, nil, late)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(3))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("a fault hit its stream at"))
	})

	It("does not judge a member whose client could not read a server message (no-lost-acks, no-gaps)", func() {
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1).deliver(0, 1, 0, "a1", 1).deliver(1, 1, 0, "a1", 1)
		c.send(0, "a2", 2).ack(0, "a2", 2, 2).deliver(0, 2, 0, "a2", 2)
		c.send(0, "a3", 3).ack(0, "a3", 3, 3).deliver(0, 3, 0, "a3", 3).deliver(1, 3, 0, "a3", 3)
		c.send(0, "a4", 4)
		c.send(0, "a5", 5)
		withUnread := append(append([]ev.Event(nil), c.evs...), ev.Event{}) // bob's unread message, placed below
		copy(withUnread[6:], c.evs[5:])
		withUnread[5] = ev.Event{Kind: ev.Unread, At: 5 * time.Second, Client: 1, User: user(1), Field: ev.UnreadError, Detail: "mapping failed"}
		// Without the unread event bob lost seq 2, with a hole below seq 3.
		Expect(run("no-lost-acks", noDecode, nil, c.evs).Status).To(Equal(check.Fail))
		Expect(run("no-gaps", noDecode, nil, c.evs).Status).To(Equal(check.Fail))
		// With it, seq 2 may be the message bob could not read.
		v := run("no-lost-acks", noDecode, nil, withUnread)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("1 membership(s) not judged: their client got server messages it could not read"))
		v = run("no-gaps", noDecode, nil, withUnread)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("1 membership(s) not judged"))
		// When no membership is left to judge, neither passes.
		for _, c := range []int{0, 1} {
			withUnread = append(withUnread, ev.Event{Kind: ev.Unread, At: 5 * time.Second, Client: c, User: user(c), Field: ev.UnreadUnmatched})
		}
		for _, name := range []string{"no-lost-acks", "no-gaps"} {
			v = run(name, noDecode, nil, withUnread)
			Expect(v.Status).To(Equal(check.NotMeasurable), "%s: %s", name, v.Summary)
		}
	})

	It("does not judge a membership opened on a stream that already carried an unread message (the Unread events stop at a cap)", func() {
		evs := []ev.Event{
			{Kind: ev.Connect, Client: 1, User: user(1)},
			{Kind: ev.Unread, At: time.Second, Client: 1, User: user(1), Field: ev.UnreadError, Detail: "mapping failed"},
			{Kind: ev.Join, At: 2 * time.Second, Client: 1, User: user(1), Scope: "s"},
			{Kind: ev.Deliver, At: 3 * time.Second, Client: 1, User: user(1), Scope: "s", Seq: 3, Sender: "x", MsgID: "x3"},
			{Kind: ev.Join, At: 2 * time.Second, Client: 0, User: user(0), Scope: "s"},
			{Kind: ev.Deliver, At: 3 * time.Second, Client: 0, User: user(0), Scope: "s", Seq: 1, Sender: "x", MsgID: "x1"},
		}
		v := run("no-gaps", noDecode, nil, evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("1 membership(s) not judged"))
		// On a new stream, the client is judged again.
		evs = append(evs[:2:2], append([]ev.Event{{Kind: ev.Connect, At: 1500 * time.Millisecond, Client: 1, User: user(1)}}, evs[2:]...)...)
		Expect(run("no-gaps", noDecode, nil, evs).Status).To(Equal(check.Fail))
	})

	It("does not count an unjudged membership's deliveries as judged, nor pass on members who received nothing (no-gaps)", func() {
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.deliver(0, 1, 0, "a1", 1)
		c.evs = append(c.evs, ev.Event{Kind: ev.Unread, At: c.at(), Client: 0, User: user(0), Field: ev.UnreadError, Detail: "mapping failed"})
		c.deliver(0, 5, 0, "a5", 5)
		v := run("no-gaps", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("no membership judged of 2: 1 not judged"))
		Expect(v.Summary).To(ContainSubstring("1 received nothing"))
		// bob receives seq 1: judged, and only his delivery counted.
		c.deliver(1, 1, 0, "a1", 1)
		v = run("no-gaps", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(HavePrefix("1 memberships (1 deliveries)"))
	})

	It("does not hold a member whose stream ended cleanly to what was acked after it left", func() {
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1).deliver(0, 1, 0, "a1", 1).deliver(1, 1, 0, "a1", 1)
		c.disconnect(1, codes.OK) // bob's client ends at its own time
		c.evs = append(c.evs, ev.Event{Kind: ev.Leave, Client: 1, User: user(1), Scope: "r"})
		c.send(0, "a2", 2).ack(0, "a2", 2, 2).deliver(0, 2, 0, "a2", 2)
		v := run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
	})

	It("is not measurable when acks came but no membership was held to any (no-lost-acks)", func() {
		// ann and bob join at 0 and 1, ann's one message is acked at 3 and
		// both streams end at 4: inside the 2s grace, nobody owes seq 1.
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1)
		c.disconnect(0, codes.OK).disconnect(1, codes.OK)
		c.evs[len(c.evs)-1].At = c.evs[len(c.evs)-2].At
		v := run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("no membership of their rooms was held to any of them"))
		Expect(v.Summary).To(ContainSubstring("0 shorter than the grace 2s, 2 with nothing acked while subscribed"))
		// Cut by the server before receiving anything: owed nothing either.
		c = &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1)
		c.send(0, "a2", 2).ack(0, "a2", 2, 2)
		c.send(0, "a3", 3).send(0, "a4", 4)
		c.disconnect(0, codes.ResourceExhausted).disconnect(1, codes.ResourceExhausted)
		v = run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), "%s %v", v.Summary, v.Evidence)
		// One of them held to seq 1 (received, then cut): a pass that
		// says how many owed nothing.
		c.evs = append(c.evs[:4:4], append([]ev.Event{{Kind: ev.Deliver, At: c.evs[3].At, Client: 1, User: user(1), Scope: "r",
			Seq: 1, Sender: user(0), MsgID: "a1", SenderSeq: 1}}, c.evs[4:]...)...)
		v = run("no-lost-acks", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("each of 1 memberships"))
		Expect(v.Summary).To(ContainSubstring("1 membership(s) owed nothing"))
	})

	It("total-order compares an ack with deliveries by its message id, skips what has none, and needs two observers of a seq", func() {
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1)
		c.deliver(1, 1, 0, "a1", 1)
		c.evs[len(c.evs)-1].Sender = "42" // the server names ann its own way
		v := run("total-order", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		// Another message at seq 1 is still caught.
		c.deliver(0, 1, 1, "b1", 1)
		v = run("total-order", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		// An ack without a message id names no message: not judged.
		c = &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "", 1, 1).deliver(1, 1, 0, "a1", 1).deliver(0, 1, 0, "a1", 1)
		v = run("total-order", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("1 deliveries and acks without a client message id not judged"))
		// One observer per seq: nothing compared.
		c = &chat{}
		c.join(0, 0).deliver(0, 1, 0, "a1", 1).deliver(0, 2, 0, "a2", 2)
		v = run("total-order", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("no seq was seen by two observers"))
	})

	It("sender-fifo and delivery-order are not measurable when nothing was ordered against anything", func() {
		// ann and bob send one message each; each member receives one.
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1).send(1, "b1", 1).ack(1, "b1", 1, 2)
		c.deliver(0, 2, 1, "b1", 1).deliver(1, 1, 0, "a1", 1)
		for _, name := range []string{"sender-fifo", "delivery-order"} {
			v := run(name, noDecode, nil, c.evs)
			Expect(v.Status).To(Equal(check.NotMeasurable), "%s: %s", name, v.Summary)
		}
		// One more each: judged.
		c.send(0, "a2", 2).ack(0, "a2", 2, 3).deliver(0, 3, 0, "a2", 2).deliver(1, 3, 0, "a2", 2)
		for _, name := range []string{"sender-fifo", "delivery-order"} {
			v := run(name, noDecode, nil, c.evs)
			Expect(v.Status).To(Equal(check.Pass), "%s: %s", name, v.Summary)
		}
	})

	It("no-duplicates says a duplicate ack naming the wrong seq is that, not a second copy stored", func() {
		c := &chat{}
		c.join(0, 0).send(0, "a1", 1).ack(0, "a1", 1, 1).deliver(0, 1, 0, "a1", 1)
		c.disconnect(0, codes.Unavailable)
		c.join(0, 1).send(0, "a1", 1).ack(0, "a1", 1, 2)
		c.evs[len(c.evs)-1].Duplicate = true
		v := run("no-duplicates", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(Equal("the resend of ann/a1 was acked as a duplicate at seq 2, but its first copy holds seq 1"))
	})

	It("is not measurable without traffic, never a pass", func() {
		for _, name := range []string{"total-order", "no-gaps", "no-lost-acks", "sender-fifo", "realtime-order", "resume-complete"} {
			Expect(run(name, noDecode, nil, nil).Status).To(Equal(check.NotMeasurable), name)
		}
	})
})

var _ = Describe("resume-complete", func() {
	It("passes a resume that replays exactly the missed range", func() {
		c := &chat{}
		c.resume(0, 1, 3, 2, true).deliver(0, 2, 1, "b1", 1).deliver(0, 3, 1, "b2", 2).deliver(0, 4, 1, "b3", 3)
		Expect(run("resume-complete", noDecode, nil, c.evs).Status).To(Equal(check.Pass))
	})
	It("passes an incomplete resume that says so and replays the retained part, replay_from to the head", func() {
		c := &chat{}
		c.resume(0, 1, 30, 10, false)
		for seq := uint64(10); seq <= 30; seq++ {
			c.deliver(0, seq, 1, fmt.Sprintf("b%d", seq), seq)
		}
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("1 replays judged complete (1 of them the retained part"))
		// Seqs 12..30 of the retained part never arrive.
		v = run("resume-complete", noDecode, nil, c.evs[:3])
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("said incomplete, replaying from seq 10, but seqs 12..30 of that replay never arrived"))
	})
	It("does not judge a replay whose client could not read a server message (it may be one of the replay's)", func() {
		c := &chat{}
		c.resume(0, 7, 10, 8, true).deliver(0, 8, 1, "b8", 8)
		c.evs = append(c.evs, ev.Event{Kind: ev.Unread, At: c.at(), Client: 0, User: user(0), Field: ev.UnreadError, Detail: "mapping failed"})
		c.deliver(0, 10, 1, "b10", 10)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("1 not judged: their client got server messages it could not read"))
		// Without the unread message, seq 9 is missing from a complete claim.
		v = run("resume-complete", noDecode, nil, append(c.evs[:2:2], c.evs[3]))
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
	})
	It("is not measurable when every resume says incomplete and replays nothing: a server that never replays is never a pass", func() {
		c := &chat{}
		c.resume(0, 50, 100, 0, false).resume(1, 60, 120, 0, false)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("2 said they could not and replayed nothing"))
	})
	It("catches a replay that skips part of the range while claiming completeness", func() {
		c := &chat{}
		c.resume(0, 1, 4, 2, true).deliver(0, 2, 1, "b1", 1).deliver(0, 4, 1, "b3", 3)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Seq).To(Equal(uint64(3)))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("seqs 3..3 of the missed range never arrived"))
	})
	It("does not judge a replay cut short by a broken stream (Disconnect, then the Leave it implies): not measurable", func() {
		c := &chat{}
		c.resume(0, 1, 4, 2, true).deliver(0, 2, 1, "b1", 1)
		c.disconnect(0, codes.Unavailable)
		c.evs = append(c.evs, ev.Event{Kind: ev.Leave, Client: 0, Scope: "r"})
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("cut short by a broken stream"))
	})
	It("is not measurable when no resume had anything to replay", func() {
		c := &chat{}
		c.resume(0, 4, 4, 0, true).resume(1, 4, 4, 0, true)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("2 resumes, none had missed messages to replay"))
	})
	It("accepts a complete replay that arrives out of order (delivery-order judges the order)", func() {
		c := &chat{}
		c.resume(0, 1, 4, 2, true).deliver(0, 3, 1, "b2", 2).deliver(0, 2, 1, "b1", 1).deliver(0, 4, 1, "b3", 3)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("1 replays judged complete"))
	})
	It("judges a replay whose stream ended cleanly before it completed", func() {
		c := &chat{}
		c.resume(0, 1, 4, 2, true).deliver(0, 2, 1, "b1", 1)
		c.disconnect(0, codes.OK)
		c.evs = append(c.evs, ev.Event{Kind: ev.Leave, Client: 0, Scope: "r"})
		c.resume(0, 2, 4, 3, true).deliver(0, 3, 1, "b2", 2).deliver(0, 4, 1, "b3", 3)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Violations).To(Equal(1))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("resume after seq 1 claimed complete but seqs 3..4 of the missed range never arrived"))
	})
	It("does not judge a replay cut short by the client's own CloseSend, however cleanly the server then ends the stream", func() {
		c := &chat{}
		c.resume(0, 1, 4, 2, true).deliver(0, 2, 1, "b1", 1)
		c.evs = append(c.evs, ev.Event{Kind: ev.Disconnect, At: c.at(), Client: 0, User: user(0), Code: codes.OK, Latency: 3 * time.Second})
		c.evs = append(c.evs, ev.Event{Kind: ev.Leave, Client: 0, Scope: "r"})
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("cut short by a broken stream or the client's own CloseSend"))
	})
	It("still judges a member that leaves mid-replay on a healthy stream", func() {
		c := &chat{}
		c.resume(0, 1, 4, 2, true).deliver(0, 2, 1, "b1", 1)
		c.evs = append(c.evs, ev.Event{Kind: ev.Leave, Client: 0, Scope: "r"})
		c.disconnect(0, codes.OK)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("seqs 3..4 of the missed range never arrived"))
	})
	It("catches a replay that starts late while claiming completeness", func() {
		c := &chat{}
		c.resume(0, 1, 4, 3, true)
		v := run("resume-complete", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("replay starts at seq 3"))
	})
})

var _ = Describe("convergence", func() {
	evs := func(replicaText string, replicaVersion uint64) []ev.Event {
		return []ev.Event{
			{Kind: ev.Ack, Client: 0, Scope: "d", Seq: 7},
			{Kind: ev.Replica, Client: 0, Scope: "d", Seq: 7, Text: "hello world"},
			{Kind: ev.Replica, Client: 1, Scope: "d", Seq: replicaVersion, Text: replicaText},
			{Kind: ev.ServerState, Client: 2, Scope: "d", Seq: 7, Text: "hello world"},
		}
	}
	It("passes when every replica equals the server", func() {
		Expect(run("convergence", noDecode, nil, evs("hello world", 7)).Status).To(Equal(check.Pass))
	})
	It("shows a readable diff when a replica diverged", func() {
		v := run("convergence", noDecode, nil, evs("hello wxrld", 7))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Client).To(ContainSubstring("#1"))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("first difference at code point 7"))
	})
	It("is not measurable when an editor ended without a replica (it may be the one that diverged)", func() {
		e := append(evs("hello world", 7), ev.Event{Kind: ev.Replica, Client: 3, Scope: "d", Field: ev.FieldNoReplica,
			Detail: "its edits were not all acknowledged within 10s"})
		v := run("convergence", noDecode, nil, e)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("1 editor(s) ended without a replica to judge: #3 () of d (its edits were not all acknowledged within 10s); 2 replicas judged"))
	})
	It("catches a replica left behind", func() {
		v := run("convergence", noDecode, nil, evs("hello", 5))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("stopped at version 5, server is at 7"))
	})
	It("catches an ack beyond the server's history", func() {
		e := evs("hello world", 7)
		e[0].Seq = 9
		v := run("convergence", noDecode, nil, e)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("acked as version 9"))
	})
})

var _ = Describe("game-invariants", func() {
	tick := func(tick, last uint64, x, y float64) ev.Event {
		return ev.Event{Kind: ev.Tick, Client: 0, Scope: "m", Seq: tick, LastInput: last, X: x, Y: y}
	}
	dropped := func(e ev.Event, n uint64) ev.Event { e.Dropped = n; return e }
	send := func(seq uint64) ev.Event { return ev.Event{Kind: ev.Send, Client: 0, Scope: "m", SenderSeq: seq} }
	DescribeTable("judges player updates",
		func(evs []ev.Event, status check.Status, detail string) {
			v := run("game-invariants", noDecode, nil, evs)
			Expect(v.Status).To(Equal(status), v.Summary)
			if detail != "" {
				Expect(v.Evidence[0].Detail).To(ContainSubstring(detail))
				Expect(v.Evidence[0].Scope).To(Equal("m"))
			}
		},
		Entry("legal walk", []ev.Event{tick(1, 0, 5, 5), tick(2, 1, 10, 5), tick(3, 3, 25, 5)}, check.Pass, ""),
		Entry("tick goes back", []ev.Event{tick(5, 0, 5, 5), tick(4, 0, 5, 5)}, check.Fail, "got tick 4 after tick 5"),
		Entry("outside the map", []ev.Event{tick(1, 0, 5, 5), tick(2, 1, -1, 5)}, check.Fail, "outside the 1000x1000 map"),
		Entry("last input goes back", []ev.Event{tick(1, 5, 5, 5), tick(2, 3, 5, 5)}, check.Fail, "went back from 5 to 3"),
		Entry("too many inputs in one tick", []ev.Event{tick(1, 0, 5, 5), tick(2, 9, 5, 5)}, check.Fail, "9 inputs processed over 1 tick(s)"),
		Entry("speed hack", []ev.Event{tick(1, 0, 5, 5), tick(2, 1, 500, 5)}, check.Fail, "moved 495.00 over 1 tick(s) and at most 1 input(s)"),
		Entry("dropped inputs are not counted as processed", []ev.Event{tick(1, 0, 5, 5), dropped(tick(2, 1000, 15, 5), 997)}, check.Pass, ""),
		Entry("a drop counter running ahead of last_input is not blamed", []ev.Event{tick(1, 0, 5, 5), dropped(tick(2, 4, 45, 5), 500)}, check.Pass, ""),
		Entry("a move longer than the per-tick limit allows is caught", []ev.Event{tick(1, 0, 5, 5), dropped(tick(2, 1000, 60, 5), 996)}, check.Fail, "moved 55.00 over 1 tick(s) and at most 4 input(s)"),
		Entry("inputs processed beyond the limit with drops reported are caught", []ev.Event{tick(1, 0, 5, 5), dropped(tick(2, 1000, 15, 5), 10)}, check.Fail, "at least 990 inputs processed over 1 tick(s)"),
		Entry("a reconnected client's seq numbering gap is not counted as processed", []ev.Event{
			tick(1, 0, 5, 5), {Kind: ev.Send, Client: 0, Scope: "m", SenderSeq: 354}, tick(2, 354, 10, 5)}, check.Pass, ""),
		Entry("inputs counted from what the client sent", []ev.Event{
			tick(1, 0, 5, 5), send(1), send(2), send(3), send(4), send(5), send(6), tick(2, 6, 10, 5)}, check.Fail, "at least 6 inputs processed over 1 tick(s)"),
		Entry("over-limit drops reported one update early belong to the next gap", []ev.Event{
			dropped(tick(1, 4, 5, 5), 0), dropped(tick(2, 8, 5, 5), 66), dropped(tick(3, 78, 5, 5), 82)}, check.Pass, ""),
		Entry("drops reported while last_input stood still belong to the next gap (a tick whose inputs were all dropped)", []ev.Event{
			dropped(tick(1, 4, 5, 5), 0), dropped(tick(2, 8, 5, 5), 10), dropped(tick(3, 8, 5, 5), 22), dropped(tick(4, 34, 5, 5), 22)}, check.Pass, ""),
		Entry("inputs processed beyond the limit are still caught after a still update", []ev.Event{
			dropped(tick(1, 4, 5, 5), 0), dropped(tick(2, 8, 5, 5), 10), dropped(tick(3, 8, 5, 5), 12), dropped(tick(4, 34, 5, 5), 12)}, check.Fail, "inputs processed over 1 tick(s)"),
		Entry("moved with no input", []ev.Event{tick(1, 2, 5, 5), tick(2, 2, 9, 5)}, check.Fail, "with no input processed"),
		Entry("no ticks", []ev.Event{}, check.NotMeasurable, ""),
	)
})

var _ = Describe("game-invariants judges each membership by the rules its server announced", func() {
	// joined is player client's Joined in match m, announcing a map of w x h,
	// max_step step and max_inputs_per_tick n (zeros: no rules).
	joined := func(client int, m string, w, h, step float64, n uint32) ev.Event {
		return ev.Event{Kind: ev.Join, Client: client, User: user(client), Role: "player", Scope: m, X: w, Y: h, MaxStep: step, MaxInputs: n}
	}
	tick := func(client int, m string, tick, last uint64, x, y float64) ev.Event {
		return ev.Event{Kind: ev.Tick, Client: client, User: user(client), Role: "player", Scope: m, Seq: tick, LastInput: last, X: x, Y: y}
	}
	// walk: client walks 15 per input, one input per tick, from (1500, 1500)
	// on match m: legal on a 2000x2000 map with max_step 20.
	walk := func(client int, m string) []ev.Event {
		return []ev.Event{tick(client, m, 1, 0, 1500, 1500), tick(client, m, 2, 1, 1515, 1500), tick(client, m, 3, 2, 1530, 1500)}
	}
	with := func(j ev.Event, rest ...ev.Event) []ev.Event { return append([]ev.Event{j}, rest...) }
	f64 := func(v float64) *float64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	params := func(set func(p *check.GameParams)) func(any) error {
		return func(into any) error { set(into.(*check.GameParams)); return nil }
	}

	It("passes a player moving 15 per input on a 2000x2000 map whose Joined says max_step 20", func() {
		v := run("game-invariants", noDecode, nil, with(joined(0, "m", 2000, 2000, 20, 4), walk(0, "m")...))
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).NotTo(ContainSubstring("defaults"))
	})

	It("fails the same walk when the Joined says max_step 10, naming the player and the tick", func() {
		v := run("game-invariants", noDecode, nil, with(joined(0, "m", 2000, 2000, 10, 4), walk(0, "m")...))
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(2))
		Expect(v.Evidence[0].Client).To(Equal("#0 ann (player)"))
		Expect(v.Evidence[0].Seq).To(Equal(uint64(2)))
		Expect(v.Evidence[0].Scope).To(Equal("m"))
		Expect(v.Evidence[0].Detail).To(And(ContainSubstring("#0 ann (player) moved 15.00"), ContainSubstring("by tick 2"),
			ContainSubstring("max_step 10, announced by the server")))
		Expect(v.Evidence[1].Seq).To(Equal(uint64(3)))
	})

	It("judges each match by its own Joined", func() {
		evs := []ev.Event{joined(0, "big", 2000, 2000, 20, 4), joined(1, "small", 2000, 2000, 10, 4)}
		evs = append(append(evs, walk(0, "big")...), walk(1, "small")...)
		v := run("game-invariants", noDecode, nil, evs)
		Expect(v.Status).To(Equal(check.Fail))
		for _, e := range v.Evidence {
			Expect(e.Scope).To(Equal("small"))
			Expect(e.Client).To(HavePrefix("#1 bob"))
		}
	})

	It("takes the new rules on a rejoin", func() {
		evs := with(joined(0, "m", 2000, 2000, 10, 4), tick(0, "m", 1, 0, 1500, 1500),
			ev.Event{Kind: ev.Leave, Client: 0, Scope: "m"}, joined(0, "m", 2000, 2000, 20, 4))
		evs = append(evs, walk(0, "m")...)
		Expect(run("game-invariants", noDecode, nil, evs).Status).To(Equal(check.Pass))
	})

	DescribeTable("explicit check parameters win over the announced rules",
		func(set func(p *check.GameParams), detail string) {
			v := run("game-invariants", params(set), nil, with(joined(0, "m", 2000, 2000, 20, 4), walk(0, "m")...))
			Expect(v.Status).To(Equal(check.Fail), v.Summary)
			Expect(v.Evidence[0].Detail).To(ContainSubstring(detail))
		},
		Entry("max_step 10", func(p *check.GameParams) { p.MaxStep = f64(10) }, "max_step 10, set in the check's parameters"),
		Entry("a 1000x1000 map", func(p *check.GameParams) { p.Width, p.Height = f64(1000), f64(1000) },
			"outside the 1000x1000 map at tick 1 (map size set in the check's parameters)"),
		Entry("width only", func(p *check.GameParams) { p.Width = f64(1200) },
			"outside the 1200x2000 map at tick 1 (width set in the check's parameters, height announced by the server)"),
		Entry("max_step 1 with max_inputs_per_tick 1", func(p *check.GameParams) { p.MaxStep, p.MaxInputsPerTick = f64(1), u64(1) },
			"max_step 1, set in the check's parameters"),
	)

	It("leaves the announced rules alone for what the parameters do not set", func() {
		v := run("game-invariants", params(func(p *check.GameParams) { p.MaxInputsPerTick = u64(100) }), nil,
			with(joined(0, "m", 2000, 2000, 20, 4), walk(0, "m")...))
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
	})

	Context("when a Joined announced no rules", func() {
		It("judges by the reference defaults and says so in the summary", func() {
			v := run("game-invariants", noDecode, nil, with(joined(0, "m", 0, 0, 0, 0),
				tick(0, "m", 1, 0, 500, 500), tick(0, "m", 2, 1, 510, 500)))
			Expect(v.Status).To(Equal(check.Pass), v.Summary)
			Expect(v.Summary).To(ContainSubstring("1 player membership(s) judged by the reference server's defaults " +
				"(width 1000, height 1000, max_step 10, max_inputs_per_tick 4): their Joined announced no rules"))

			v = run("game-invariants", noDecode, nil, with(joined(0, "m", 0, 0, 0, 0), walk(0, "m")...))
			Expect(v.Status).To(Equal(check.Fail))
			Expect(v.Evidence[0].Detail).To(ContainSubstring("outside the 1000x1000 map at tick 1 (map size the reference default"))
			Expect(v.Summary).To(ContainSubstring("judged by the reference server's defaults"))
		})
		It("names only the rules that fell back, and none that the parameters set", func() {
			v := run("game-invariants", params(func(p *check.GameParams) { p.MaxStep = f64(20) }), nil,
				with(joined(0, "m", 2000, 0, 0, 4), tick(0, "m", 1, 0, 900, 900), tick(0, "m", 2, 1, 915, 900)))
			Expect(v.Status).To(Equal(check.Pass), v.Summary)
			Expect(v.Summary).To(ContainSubstring("defaults (height 1000): their Joined announced no rules;"))
			Expect(v.Summary).To(HaveSuffix("1 player membership(s) judged by rules their server announced about itself " +
				"(set width, height, max_step and max_inputs_per_tick in the check's params to hold a server to rules of yours)"))
		})
		It("says nothing of defaults when the parameters set every rule", func() {
			v := run("game-invariants", params(func(p *check.GameParams) {
				p.Width, p.Height, p.MaxStep, p.MaxInputsPerTick = f64(2000), f64(2000), f64(20), u64(4)
			}), nil, with(joined(0, "m", 0, 0, 0, 0), walk(0, "m")...))
			Expect(v.Status).To(Equal(check.Pass), v.Summary)
			Expect(v.Summary).NotTo(ContainSubstring("defaults"))
		})
	})

	DescribeTable("rejects parameters that are not positive",
		func(set func(p *check.GameParams), field string) {
			_, err := check.New("game-invariants", params(set))
			Expect(err).To(MatchError(ContainSubstring(field + " must be positive")))
		},
		Entry("width", func(p *check.GameParams) { p.Width = f64(0) }, "width"),
		Entry("height", func(p *check.GameParams) { p.Height = f64(-3) }, "height"),
		Entry("max_step", func(p *check.GameParams) { p.MaxStep = f64(0) }, "max_step"),
		Entry("max_inputs_per_tick", func(p *check.GameParams) { p.MaxInputsPerTick = u64(0) }, "max_inputs_per_tick"),
	)

	It("reads explicit parameters from a scenario file", func() {
		src := func(params string) []byte {
			return []byte("name: g\nservice: game\nduration: 1s\nroles:\n  - name: player\n    count: 1\n    behaviour: player\n" +
				"checks:\n  - game-invariants" + params + "\n")
		}
		s, err := scenario.Parse("g.yaml", src(": { max_step: 10 }"))
		Expect(err).NotTo(HaveOccurred())
		c, err := s.Checks[0].New()
		Expect(err).NotTo(HaveOccurred())
		for _, e := range with(joined(0, "m", 2000, 2000, 20, 4), walk(0, "m")...) {
			c.Observe(&e)
		}
		Expect(c.Verdict(context.Background(), nil).Status).To(Equal(check.Fail))

		s, err = scenario.Parse("g.yaml", src(""))
		Expect(err).NotTo(HaveOccurred())
		c, err = s.Checks[0].New()
		Expect(err).NotTo(HaveOccurred())
		for _, e := range with(joined(0, "m", 2000, 2000, 20, 4), walk(0, "m")...) {
			c.Observe(&e)
		}
		Expect(c.Verdict(context.Background(), nil).Status).To(Equal(check.Pass))

		_, err = scenario.Parse("g.yaml", src(": { width: 0 }"))
		Expect(err).To(MatchError(ContainSubstring("width must be positive")))
	})
})

var _ = Describe("status-codes", func() {
	expectMalformed := func(into any) error {
		p := into.(*check.StatusParams)
		p.Expect = map[string][]string{"malformed": {"INVALID_ARGUMENT"}}
		return nil
	}
	It("passes documented codes and catches INTERNAL", func() {
		ok := []ev.Event{{Kind: ev.Disconnect, Client: 3, Role: "malformed", Code: codes.InvalidArgument}}
		Expect(run("status-codes", expectMalformed, healthy, ok).Status).To(Equal(check.Pass))
		bad := []ev.Event{{Kind: ev.Disconnect, Client: 3, Role: "malformed", Code: codes.Internal, Detail: "grpc: failed to unmarshal"}}
		v := run("status-codes", expectMalformed, healthy, bad)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("INTERNAL"))
	})
	It("catches bad input that went unanswered", func() {
		v := run("status-codes", expectMalformed, healthy, nil)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("never got INVALID_ARGUMENT"))
	})
	It("parses code names", func() {
		c, err := check.ParseCode("resource_exhausted")
		Expect(err).NotTo(HaveOccurred())
		Expect(c).To(Equal(codes.ResourceExhausted))
		_, err = check.ParseCode("NOPE")
		Expect(err).To(MatchError(ContainSubstring(`unknown gRPC status code "NOPE"`)))
	})
})

var _ = Describe("fairness", func() {
	params := func(into any) error {
		p := into.(*check.FairnessParams)
		p.Honest, p.Attackers, p.Rate, p.Burst, p.MinCalmSamples = "honest", "flooder", 10, 5, 1
		return nil
	}
	// history: 4 honest clients (users h0..h3) send and receive each
	// other's messages with calm latency before t=1s and underLatency after;
	// the flooder (user f) sends from t=1s, and its own messages reach the
	// honest clients with floodLatency (its send backlog).
	history := func(underLatency time.Duration, flooderAccepted int, starve bool) []ev.Event {
		var evs []ev.Event
		h := func(c int) string { return fmt.Sprintf("h%d", c) }
		for c := 0; c < 4; c++ {
			evs = append(evs, ev.Event{Kind: ev.Send, Client: c, User: h(c), Role: "honest", At: 10 * time.Millisecond})
			evs = append(evs, ev.Event{Kind: ev.Ack, Client: c, User: h(c), Role: "honest", At: 20 * time.Millisecond, Latency: 2 * time.Millisecond})
		}
		for c := 0; c < 4; c++ {
			evs = append(evs, ev.Event{Kind: ev.Deliver, Client: c, User: h(c), Role: "honest", Sender: h((c + 1) % 4), At: 500 * time.Millisecond, Latency: 2 * time.Millisecond})
		}
		evs = append(evs, ev.Event{Kind: ev.Send, Client: 9, User: "f", Role: "flooder", At: time.Second})
		for i := 0; i < flooderAccepted; i++ {
			evs = append(evs, ev.Event{Kind: ev.Ack, Client: 9, User: "f", Role: "flooder", At: time.Second + time.Duration(i)*time.Millisecond})
		}
		evs = append(evs, ev.Event{Kind: ev.Error, Client: 9, User: "f", Role: "flooder", At: 2 * time.Second, Code: codes.ResourceExhausted})
		for c := 0; c < 4; c++ {
			evs = append(evs, ev.Event{Kind: ev.Send, Client: c, User: h(c), Role: "honest", At: 1400 * time.Millisecond})
			n := 10
			if starve && c == 0 {
				n = 1
			}
			for i := 0; i < n; i++ {
				evs = append(evs, ev.Event{Kind: ev.Ack, Client: c, User: h(c), Role: "honest", At: 1500 * time.Millisecond, Latency: underLatency})
			}
			evs = append(evs, ev.Event{Kind: ev.Deliver, Client: c, User: h(c), Role: "honest", Sender: h((c + 1) % 4), At: 1500 * time.Millisecond, Latency: underLatency})
			evs = append(evs, ev.Event{Kind: ev.Deliver, Client: c, User: h(c), Role: "honest", Sender: "f", At: 1500 * time.Millisecond, Latency: 5 * time.Second})
		}
		return evs
	}
	It("passes when attackers are throttled and honest clients unaffected", func() {
		v := run("fairness", params, healthy, history(2*time.Millisecond, 5, false))
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
	})
	It("catches an attacker accepted beyond rate x time + burst", func() {
		v := run("fairness", params, healthy, history(2*time.Millisecond, 500, false))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("sends accepted"))
	})
	It("catches honest latency blown up under attack", func() {
		v := run("fairness", params, healthy, history(50*time.Millisecond, 5, false))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("the calm p99"))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("honest delivery p99"))
	})
	It("catches an unfair share among honest clients", func() {
		v := run("fairness", params, healthy, history(2*time.Millisecond, 5, true))
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("Jain's fairness index"))
	})
	It("does not blame the server for an error the harness's own fault caused", func() {
		evs := history(2*time.Millisecond, 5, false)
		evs = append(evs, ev.Event{Kind: ev.Fault, Client: 1, Role: "honest", At: 1600 * time.Millisecond, Detail: "abrupt-close"},
			ev.Event{Kind: ev.Disconnect, Client: 1, Role: "honest", At: 1601 * time.Millisecond, Code: codes.Unavailable})
		Expect(run("fairness", params, healthy, evs).Status).To(Equal(check.Pass))
		evs = append(evs, ev.Event{Kind: ev.Disconnect, Client: 2, Role: "honest", At: 1700 * time.Millisecond, Code: codes.Unavailable})
		v := run("fairness", params, healthy, evs)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("honest #2"))
	})
	// lagged adds the engine's harness-lag reports: every 250 ms of the
	// run's first 3 s, the scheduler lag sched from t=1s on (calm before).
	lagged := func(evs []ev.Event, sched time.Duration) []ev.Event {
		for at := 250 * time.Millisecond; at <= 3*time.Second; at += 250 * time.Millisecond {
			l := time.Duration(0)
			if at >= time.Second {
				l = sched
			}
			evs = append(evs, ev.Event{Kind: ev.HarnessLag, Client: -1, At: at, Field: ev.LagScheduler, Latency: l},
				ev.Event{Kind: ev.HarnessLag, Client: -1, At: at, Field: ev.LagDispatch})
		}
		return evs
	}
	It("does not blame the server for a latency rise the harness's own lag can explain", func() {
		// calm p99 2ms, bound 3ms, under attack 50ms: an excess of 47ms;
		// 30ms of scheduler lag can add 60ms (send side and receive side).
		v := run("fairness", params, healthy, lagged(history(50*time.Millisecond, 5, false), 30*time.Millisecond))
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("not blamed on the server"))
		Expect(v.Summary).To(ContainSubstring("harness lag up to 30ms"))
	})
	It("still blames a latency rise beyond what the harness's lag can add", func() {
		v := run("fairness", params, healthy, lagged(history(50*time.Millisecond, 5, false), 5*time.Millisecond))
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("honest delivery p99"))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("harness lag up to 5ms"))
	})
	It("does not blame the server for cutting an honest reader right after the harness paused", func() {
		cut := func(sched time.Duration) []ev.Event {
			evs := lagged(history(2*time.Millisecond, 5, false), sched)
			return append(evs, ev.Event{Kind: ev.Kick, Client: 3, User: "h3", Role: "honest", At: 1800 * time.Millisecond,
				Code: codes.ResourceExhausted, Detail: "slow consumer"})
		}
		v := run("fairness", params, healthy, cut(300*time.Millisecond))
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("1 honest RESOURCE_EXHAUSTED answer(s) came within a second after the harness paused longer than 100ms"))
		v = run("fairness", params, healthy, cut(10*time.Millisecond))
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("got RESOURCE_EXHAUSTED: slow consumer"))
	})
	It("weighs every honest RESOURCE_EXHAUSTED answer against the lag, not only the first ones kept as evidence", func() {
		// The scheduler lags 300ms from 1s to 3s; 25 cuts within that
		// span are excused, 5 more at 5s (no lag reported then) are not.
		evs := lagged(history(2*time.Millisecond, 5, false), 300*time.Millisecond)
		for i := range 25 {
			evs = append(evs, ev.Event{Kind: ev.Kick, Client: 3, User: "h3", Role: "honest", At: 1500*time.Millisecond + time.Duration(i)*time.Millisecond,
				Code: codes.ResourceExhausted, Detail: "slow consumer"})
		}
		for i := range 5 {
			evs = append(evs, ev.Event{Kind: ev.Kick, Client: 3, User: "h3", Role: "honest", At: 5*time.Second + time.Duration(i)*time.Millisecond,
				Code: codes.ResourceExhausted, Detail: "slow consumer"})
		}
		v := run("fairness", params, healthy, evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(5))
		Expect(v.Summary).To(ContainSubstring("25 honest RESOURCE_EXHAUSTED answer(s) came within a second after the harness paused"))
	})
	It("refuses impossible parameters, naming the one that is wrong", func() {
		for param, want := range map[string]string{
			"p99_ratio_max": "p99_ratio_max is 0, want > 0", "jain_min": "jain_min is 2, want within [0, 1]",
			"burst": "burst is -1, want >= 0", "harness_pause_max": "harness_pause_max is -1s, want > 0",
		} {
			_, err := check.New("fairness", func(into any) error {
				p := into.(*check.FairnessParams)
				p.Honest, p.Attackers = "honest", "flooder"
				switch param {
				case "p99_ratio_max":
					p.P99RatioMax = 0
				case "jain_min":
					p.JainMin = 2
				case "burst":
					p.Burst = -1
				case "harness_pause_max":
					p.HarnessPauseMax = -time.Second
				}
				return nil
			})
			Expect(err).To(MatchError(ContainSubstring(want)), param)
		}
	})
	It("computes Jain's index", func() {
		Expect(check.Jain([]float64{1, 1, 1, 1})).To(BeNumerically("~", 1, 1e-9))
		Expect(check.Jain([]float64{1, 0, 0, 0})).To(BeNumerically("~", 0.25, 1e-9))
	})
})
