package check

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/bidikit/bidikit/harness/event"
)

// lostAcks is the "no-lost-acks" checker: a message acknowledged to its
// sender must reach every member who was present over its sequence number.
// A member is present from its first expected seq (join or resume point)
// until its membership ends (Leave, its stream's Disconnect, a new Join):
// it is held to what lies between its start and the last seq it received,
// whether the stream broke or ended cleanly (a client ends at its own time;
// what was acked after is not its). One still present when the events end,
// without a fault on its client, must have everything acked after its join.
type lostAcks struct {
	acked   map[string]map[uint64]ackInfo
	members map[memberKey]*coverage
	done    []*coverage
	faulted map[int]bool
	v       Verdict
}

type ackInfo struct {
	msg    string
	sender string
}

// coverage is one membership: the seqs it should have and those it got.
type coverage struct {
	client string
	id     int
	scope  string
	start  uint64
	got    [][2]uint64 // merged intervals of delivered seqs
	end    uint64      // last seq it is held to (math.MaxUint64: everything)
}

func (c *coverage) add(seq uint64) {
	if n := len(c.got); n > 0 {
		last := &c.got[n-1]
		if seq >= last[0] && seq <= last[1] {
			return
		}
		if seq == last[1]+1 {
			last[1] = seq
			return
		}
	}
	c.got = append(c.got, [2]uint64{seq, seq})
}

func (c *coverage) lastSeq() uint64 {
	var m uint64
	for _, iv := range c.got {
		m = max(m, iv[1])
	}
	return m
}

func (c *coverage) has(seq uint64) bool {
	for _, iv := range c.got {
		if seq >= iv[0] && seq <= iv[1] {
			return true
		}
	}
	return false
}

func init() {
	Register("no-lost-acks", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &lostAcks{acked: map[string]map[uint64]ackInfo{}, members: map[memberKey]*coverage{},
			faulted: map[int]bool{}, v: Verdict{Name: "no-lost-acks"}}, nil
	})
}

// close ends k's membership; atEnd: it was still present when the events
// ended.
func (l *lostAcks) close(k memberKey, atEnd bool) {
	c := l.members[k]
	if c == nil {
		return
	}
	delete(l.members, k)
	if atEnd && !l.faulted[k.client] {
		c.end = math.MaxUint64
	} else {
		c.end = c.lastSeq()
	}
	l.done = append(l.done, c)
}

func (l *lostAcks) Observe(e *event.Event) {
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Fault:
		l.faulted[e.Client] = true
	case event.Join:
		l.close(k, false)
		l.members[k] = &coverage{client: clientName(e), id: e.Client, scope: e.Scope, start: firstExpected(e)}
	case event.Leave:
		l.close(k, false)
	case event.Disconnect:
		for mk := range l.members {
			if mk.client == e.Client {
				l.close(mk, false)
			}
		}
	case event.Deliver:
		if c := l.members[k]; c != nil && e.Seq >= c.start {
			c.add(e.Seq)
		}
	case event.Ack:
		if e.Seq == 0 || e.Duplicate {
			return
		}
		room := l.acked[e.Scope]
		if room == nil {
			room = map[uint64]ackInfo{}
			l.acked[e.Scope] = room
		}
		room[e.Seq] = ackInfo{msg: e.MsgID, sender: e.User}
	}
}

func (l *lostAcks) Verdict(context.Context, Env) Verdict {
	for k := range l.members {
		l.close(k, true)
	}
	total := 0
	for _, room := range l.acked {
		total += len(room)
	}
	if total == 0 {
		l.v.Status = NotMeasurable
		l.v.Summary = "no acknowledged messages observed"
		return l.v
	}
	sort.Slice(l.done, func(i, j int) bool { return l.done[i].id < l.done[j].id })
	for _, c := range l.done {
		room := l.acked[c.scope]
		if len(room) == 0 {
			continue
		}
		var top uint64
		for seq := range room {
			top = max(top, seq)
		}
		hi := min(c.end, top)
		// Walk only the holes between delivered intervals: cheap when none.
		lo := c.start
		check := func(from, to uint64) {
			for s := from; s <= to && s <= hi; s++ {
				if a, ok := room[s]; ok {
					l.v.Add(Evidence{Scope: c.scope, Seq: s, Client: c.client,
						Detail: fmt.Sprintf("message %s/%s acked at seq %d never reached %s, present from seq %d", a.sender, a.msg, s, c.client, c.start)})
				}
			}
		}
		for _, iv := range c.got {
			if iv[0] > lo {
				check(lo, iv[0]-1)
			}
			lo = max(lo, iv[1]+1)
		}
		if lo <= hi {
			check(lo, hi)
		}
	}
	summarise(&l.v, fmt.Sprintf("all %d acknowledged messages reached every member present for them", total),
		"%d acknowledged messages missing from members who were present", l.v.Violations)
	return l.v
}
