package check_test

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	ev "github.com/bidikit/bidikit/harness/event"
)

// collab builds the events of collab replicas of document "d" as the
// engine's collab client emits them: a remote op is a Deliver, the
// replica's own op an Ack followed by a Deliver marked FieldOwnAck.
type collab struct{ evs []ev.Event }

func (c *collab) at() time.Duration { return time.Duration(len(c.evs)) * 100 * time.Millisecond }

func (c *collab) open(client int, version uint64) *collab {
	c.evs = append(c.evs, ev.Event{Kind: ev.Join, At: c.at(), Client: client, User: user(client), Scope: "d", Seq: version, Complete: true})
	return c
}

func (c *collab) remote(client int, version uint64, author int) *collab {
	c.evs = append(c.evs, ev.Event{Kind: ev.Deliver, At: c.at(), Client: client, User: user(client), Scope: "d", Seq: version,
		Sender: user(author), MsgID: user(author) + "/" + string(rune('0'+version)), SenderSeq: version})
	return c
}

func (c *collab) own(client int, version uint64) *collab {
	id := user(client) + "/" + string(rune('0'+version))
	c.evs = append(c.evs,
		ev.Event{Kind: ev.Ack, At: c.at(), Client: client, User: user(client), Scope: "d", Seq: version, MsgID: id, SenderSeq: version},
		ev.Event{Kind: ev.Deliver, At: c.at(), Client: client, User: user(client), Scope: "d", Seq: version, Sender: user(client),
			MsgID: id, SenderSeq: version, Field: ev.FieldOwnAck})
	return c
}

func (c *collab) resync(client int, received, expected uint64, code codes.Code) *collab {
	c.evs = append(c.evs, ev.Event{Kind: ev.Anomaly, At: c.at(), Client: client, User: user(client), Scope: "d",
		Field: ev.AnomalyResync, Seq: received, ReplayFrom: expected, Code: code,
		Detail: "replica given up at version 3, to be reopened from a snapshot: remote op for version 5 arrived while version 4 was expected"})
	return c
}

func (c *collab) replica(client int, version, incremental uint64, text string) *collab {
	c.evs = append(c.evs, ev.Event{Kind: ev.Replica, At: c.at(), Client: client, User: user(client), Scope: "d", Seq: version,
		SenderSeq: incremental, Text: text})
	return c
}

func (c *collab) server(version uint64, text string) *collab {
	c.evs = append(c.evs, ev.Event{Kind: ev.ServerState, At: c.at(), Client: -1, Scope: "d", Seq: version, Text: text})
	return c
}

var _ = Describe("the ordering checks on collab replicas", func() {
	// Two replicas from version 0; ann commits versions 2 and 4, bob 1 and
	// 3: each sees the other's as remote ops and its own as acks.
	interleaved := func() *collab {
		c := &collab{}
		c.open(0, 0).open(1, 0)
		c.remote(0, 1, 1).own(1, 1)
		c.own(0, 2).remote(1, 2, 0)
		c.remote(0, 3, 1).own(1, 3)
		c.own(0, 4).remote(1, 4, 0)
		return c
	}
	It("count a replica's own acked versions as received: no gap, no repeat, no reordering", func() {
		evs := interleaved().evs
		for _, name := range []string{"no-gaps", "no-duplicates", "delivery-order"} {
			v := run(name, noDecode, nil, evs)
			Expect(v.Status).To(Equal(check.Pass), "%s: %s %v", name, v.Summary, v.Evidence)
		}
	})
	It("catch a version a replica's stream skipped, repeated or swapped", func() {
		c := &collab{}
		c.open(0, 0).remote(0, 1, 1).remote(0, 3, 1) // 2 skipped
		c.remote(0, 3, 1)                            // 3 again
		c.remote(0, 5, 1).remote(0, 4, 1)            // 4 after 5
		Expect(run("no-gaps", noDecode, nil, c.evs).Evidence[0].Detail).To(ContainSubstring("never received seq 2"))
		Expect(run("no-duplicates", noDecode, nil, c.evs).Evidence[0].Detail).To(ContainSubstring("received seq 3 twice"))
		Expect(run("delivery-order", noDecode, nil, c.evs).Evidence[0].Detail).To(ContainSubstring("received seq 4 at"))
	})
})

var _ = Describe("convergence and the op stream", func() {
	It("fails when a replica was rebuilt from a snapshot because of what the server sent, unannounced", func() {
		c := interleavedAndConverged()
		c.resync(1, 5, 4, codes.OK)
		v := run("convergence", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Violations).To(Equal(1))
		Expect(v.Evidence[0].Client).To(ContainSubstring("#1 bob"))
		Expect(v.Evidence[0].Seq).To(BeEquivalentTo(5))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("rebuilt its replica from a snapshot"))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("arrived while version 4 was expected"))
		Expect(v.Summary).To(ContainSubstring("1 replica(s) rebuilt from a snapshot because the op stream broke"))
	})
	It("passes a rebuild the server announced (it refused the replica's op), and says so", func() {
		c := interleavedAndConverged()
		c.resync(1, 0, 4, codes.ResourceExhausted)
		v := run("convergence", noDecode, nil, c.evs)
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		Expect(v.Summary).To(ContainSubstring("rebuilt for a reason the server gave: 1 after RESOURCE_EXHAUSTED"))
	})
	It("reports how many versions the replicas applied op by op and took from snapshots", func() {
		v := run("convergence", noDecode, nil, interleavedAndConverged().evs)
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("6 versions applied op by op, 2 taken from snapshots"))
		Expect(v.Summary).To(ContainSubstring("no replica had to be rebuilt because of the op stream"))
	})
})

// interleavedAndConverged: two replicas at version 4 equal to the server's
// text; ann applied all 4 versions op by op, bob 2 (it opened at version 2).
func interleavedAndConverged() *collab {
	c := &collab{}
	return c.replica(0, 4, 4, "abcd").replica(1, 4, 2, "abcd").server(4, "abcd")
}

var _ = Describe("game-invariants names each tick anomaly", func() {
	tick := func(tick, digest uint64, full bool) ev.Event {
		return ev.Event{Kind: ev.Tick, Client: 0, User: user(0), Scope: "m", Seq: tick, SenderSeq: digest, Full: full, X: 5, Y: 5}
	}
	DescribeTable("judges each update's tick after the one before",
		func(evs []ev.Event, detail string) {
			v := run("game-invariants", noDecode, nil, evs)
			if detail == "" {
				Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
				return
			}
			Expect(v.Status).To(Equal(check.Fail), v.Summary)
			Expect(v.Evidence).To(HaveLen(1))
			Expect(v.Evidence[0].Detail).To(ContainSubstring(detail))
		},
		Entry("consecutive deltas", []ev.Event{tick(1, 11, true), tick(2, 12, false), tick(3, 13, false)}, ""),
		Entry("a full update may skip ticks (a slow reader's resync)", []ev.Event{tick(1, 11, true), tick(2, 12, false), tick(7, 17, true), tick(8, 18, false)}, ""),
		Entry("a delta that skips a tick", []ev.Event{tick(1, 11, true), tick(2, 12, false), tick(4, 14, false)},
			"got a delta for tick 4 after tick 2: tick skipped, the changes of tick 3 never arrived"),
		Entry("a delta that skips several", []ev.Event{tick(1, 11, true), tick(5, 15, false)}, "the changes of ticks 2..4 never arrived"),
		Entry("one state sent twice", []ev.Event{tick(1, 11, true), tick(2, 12, false), tick(2, 12, false)},
			"got the update for tick 2 twice: the same state sent again"),
		Entry("one tick number for two states", []ev.Event{tick(1, 11, true), tick(2, 12, false), tick(2, 99, false)},
			"got tick 2 after tick 2: the tick number repeated with a different state"),
		Entry("a repeat without digests", []ev.Event{tick(1, 0, true), tick(2, 0, false), tick(2, 0, false)}, "got tick 2 after tick 2: the tick repeated"),
		Entry("ticks going backwards", []ev.Event{tick(1, 11, true), tick(3, 13, true), tick(2, 12, false)}, "got tick 2 after tick 3: ticks went backwards"),
	)
})
