package check

import (
	"context"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
)

// lostAcks is the "no-lost-acks" checker: a message acknowledged to its
// sender must reach every member subscribed to its room, whatever the
// arrival order. A membership (a Join until its Leave, its stream's
// Disconnect (or the client's CloseSend before it, when it sent one: a
// server may stop feeding a stream whose client said it is done), the next
// Join or the end of the events) is held to every seq
// from its first expected one (head+1 or the first replayed seq) that was
// acked while it was subscribed, up to `grace` before it ended: what was
// acked in the last grace before a member left may still have been on its
// way (a replay's messages count as available from the join, so a
// membership shorter than the grace is held to nothing). A membership the
// server ended with a status of its own (a slow consumer cut with
// RESOURCE_EXHAUSTED, a shutdown's UNAVAILABLE) is held only up to the
// last seq it received: the server said it stopped delivering. A
// membership whose stream the harness disturbed with a fault (stopped or
// paused its reading, throttled, blackholed or reset its connection) is
// held to what was acked up to `grace` before the fault, and up to the
// last seq it received: how the stream ended after the fault, and when the
// client noticed, prove nothing about what the server still owed it. A
// membership the harness itself
// cut off because the server had not ended the stream within the close
// grace after CloseSend (status-codes judges that) is held the same way:
// what it had not read yet may still have been on its way. A membership of
// a client that received a message it could not read (event.Unread: a
// custom protocol's mapping failed on it) is not judged: any missing seq
// may be that message. Deliveries count across all of a
// client's memberships of a room, so a resume's replay makes up for what a
// broken stream missed. A member that receives nothing is judged too.
type lostAcks struct {
	p       LostAckParams
	acked   map[string]map[uint64]ackInfo // room -> seq -> first ack
	got     map[memberKey]*seqSet         // (client, room) -> every seq received, all memberships
	members memberships[*membership]
	done    []*membership
	faulted map[int]time.Duration // client -> when a fault hit its current stream
	// unreadStream: clients whose current stream carried a message they
	// could not read (cleared on Connect): later memberships on it are
	// not judged either, as the Unread events stop at a per-stream cap.
	unreadStream map[int]bool
	// graceCut counts memberships whose stream the harness ended at the
	// close grace (held only up to their last seq received).
	graceCut int
	// unread counts memberships not judged because their client received
	// a message it could not read.
	unread    int
	unreadWhy unreadNote
	last      time.Duration
	v         Verdict
}

// LostAckParams are the no-lost-acks checker's parameters.
type LostAckParams struct {
	// Grace is how long before a membership's end an ack may come without
	// the member being held to its message (default 2s).
	Grace time.Duration `yaml:"grace"`
}

type ackInfo struct {
	msg    string
	sender string
	at     time.Duration
}

// membership is one subscription: from which seq, until when, and how it
// ended.
type membership struct {
	client string
	id     int
	scope  string
	start  uint64
	joined time.Duration
	end    time.Duration
	// cut: the server ended the stream with its own status; only seqs up
	// to the last one received in this membership are owed.
	cut    bool
	unread bool   // not judged: its client received a message it could not read
	lastIn uint64 // highest seq received in this membership
	// faulted: a fault was injected on its stream at faultAt (or before it
	// joined: faultAt is then its join).
	faulted bool
	faultAt time.Duration
}

func init() {
	Register("no-lost-acks", func(decode func(any) error) (Checker, error) {
		p := LostAckParams{Grace: 2 * time.Second}
		if err := decode(&p); err != nil {
			return nil, err
		}
		if p.Grace < 0 || p.Grace > time.Minute {
			return nil, fmt.Errorf("no-lost-acks: grace must be within [0, 1m], got %s", p.Grace)
		}
		return &lostAcks{p: p, acked: map[string]map[uint64]ackInfo{}, got: map[memberKey]*seqSet{},
			members: newMemberships[*membership](), faulted: map[int]time.Duration{}, unreadStream: map[int]bool{}, v: Verdict{Name: "no-lost-acks"}}, nil
	})
}

// ended returns the function that records a membership's end at t; cut:
// by the server's own status.
func (l *lostAcks) ended(t time.Duration, cut bool) func(memberKey, *membership) {
	return func(_ memberKey, m *membership) {
		m.end, m.cut = t, cut
		l.done = append(l.done, m)
	}
}

func (l *lostAcks) Observe(e *event.Event) {
	l.last = max(l.last, e.At)
	k := memberKey{e.Client, e.Scope}
	// A Disconnect with the server's own status, not one the harness
	// caused (a cancel, the close grace), cuts the membership. (A faulted
	// one is held by its fault's time instead.)
	cut := e.Kind == event.Disconnect && e.Code != codes.OK && e.Code != codes.Canceled &&
		e.Field != event.FieldCloseGrace
	// The harness's own end of a stream at the close grace is held the
	// same way: it stopped reading (counted in graceCut).
	graceCut := e.Kind == event.Disconnect && e.Field == event.FieldCloseGrace
	if e.Kind == event.Join || e.Kind == event.Leave || e.Kind == event.Disconnect {
		endAt := e.At
		if e.Kind == event.Disconnect && e.Latency > 0 {
			// The client had sent CloseSend (Latency: from it to the
			// end): its memberships ended there. A server may stop feeding
			// a stream whose client said it is done, however long it then
			// takes to end the stream (status-codes judges that).
			endAt = max(e.At-e.Latency, 0)
		}
		end := l.ended(endAt, cut || graceCut)
		if graceCut {
			end = func(k memberKey, m *membership) {
				l.graceCut++
				l.ended(endAt, true)(k, m)
			}
		}
		l.members.track(e, func(e *event.Event) *membership {
			m := &membership{client: clientName(e), id: e.Client, scope: e.Scope, start: firstExpected(e), joined: e.At}
			if _, ok := l.faulted[e.Client]; ok {
				m.faulted, m.faultAt = true, e.At
			}
			if l.unreadStream[e.Client] {
				m.unread = true
				l.unread++
			}
			return m
		}, end)
	}
	switch e.Kind {
	case event.Fault:
		if _, ok := l.faulted[e.Client]; !ok {
			l.faulted[e.Client] = e.At
		}
		l.members.ofClient(e.Client, func(_ memberKey, m *membership) {
			if !m.faulted {
				m.faulted, m.faultAt = true, e.At
			}
		})
	case event.Connect:
		delete(l.faulted, e.Client) // a new stream: no fault on it yet
		delete(l.unreadStream, e.Client)
	case event.Unread:
		l.unreadWhy.see(e)
		l.unreadStream[e.Client] = true
		l.members.ofClient(e.Client, func(_ memberKey, m *membership) {
			if !m.unread {
				m.unread = true
				l.unread++
			}
		})
	case event.Deliver:
		if e.Seq == 0 {
			return
		}
		s := l.got[k]
		if s == nil {
			s = &seqSet{}
			l.got[k] = s
		}
		s.add(e.Seq)
		if m, ok := l.members.get(e); ok {
			m.lastIn = max(m.lastIn, e.Seq)
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
		if _, ok := room[e.Seq]; !ok {
			room[e.Seq] = ackInfo{msg: e.MsgID, sender: e.User, at: e.At}
		}
	}
}

// ackIndex is one room's acked seqs in ascending order with, for each
// position, the earliest ack time at or after it (to stop walking once every
// later ack came after a membership's end).
type ackIndex struct {
	seqs   []uint64
	sufMin []time.Duration
}

func newAckIndex(room map[uint64]ackInfo) ackIndex {
	ix := ackIndex{seqs: make([]uint64, 0, len(room))}
	for s := range room {
		ix.seqs = append(ix.seqs, s)
	}
	sort.Slice(ix.seqs, func(i, j int) bool { return ix.seqs[i] < ix.seqs[j] })
	ix.sufMin = make([]time.Duration, len(ix.seqs))
	for i := len(ix.seqs) - 1; i >= 0; i-- {
		ix.sufMin[i] = room[ix.seqs[i]].at
		if i+1 < len(ix.seqs) {
			ix.sufMin[i] = min(ix.sufMin[i], ix.sufMin[i+1])
		}
	}
	return ix
}

// lastBefore returns the highest acked seq such that some ack at or after
// it came at or before t (0: none).
func (ix ackIndex) lastBefore(t time.Duration) uint64 {
	// sufMin is non-decreasing: find the last index with sufMin <= t.
	i := sort.Search(len(ix.sufMin), func(i int) bool { return ix.sufMin[i] > t })
	if i == 0 {
		return 0
	}
	return ix.seqs[i-1]
}

func (l *lostAcks) Verdict(context.Context, Env) Verdict {
	l.members.closeAll(l.ended(l.last, false))
	total := 0
	index := map[string]ackIndex{}
	for room, acks := range l.acked {
		total += len(acks)
		index[room] = newAckIndex(acks)
	}
	if total == 0 {
		return notMeasurable(&l.v, "no acknowledged messages observed")
	}
	sort.SliceStable(l.done, func(i, j int) bool { return l.done[i].id < l.done[j].id })
	// held counts the memberships held to at least one acked seq; short
	// (under the grace) and owed (nothing acked in their window, or a cut
	// one that received nothing) were in acked rooms but owed nothing.
	held, short, owedNone := 0, 0, 0
	for _, m := range l.done {
		room := l.acked[m.scope]
		if len(room) == 0 || m.unread {
			continue
		}
		cutoff := m.end - l.p.Grace
		if m.joined > cutoff {
			short++
			continue // shorter than the grace: even a replay may still have been on its way
		}
		hi := index[m.scope].lastBefore(cutoff)
		switch {
		case m.faulted:
			// What was acked by the grace before the fault, and whatever
			// it received after.
			hi = min(hi, m.lastIn)
			if fc := m.faultAt - l.p.Grace; fc >= m.joined {
				hi = max(hi, index[m.scope].lastBefore(min(fc, cutoff)))
			}
		case m.cut:
			hi = min(hi, m.lastIn)
		}
		if hi < m.start {
			owedNone++
			continue
		}
		// Not cut, hi itself was acked by the cutoff; cut, the member
		// received hi in this membership: either way it was held to
		// something.
		held++
		got := l.got[memberKey{m.id, m.scope}]
		if got == nil {
			got = &seqSet{}
		}
		// Walk only the holes in what the client received: cheap when none.
		got.holes(m.start, hi, func(from, to uint64) bool {
			for s := from; s <= to; s++ {
				a, ok := room[s]
				if !ok || a.at > cutoff {
					continue
				}
				detail := fmt.Sprintf("message %s/%s acked at seq %d at %s never reached %s, subscribed from seq %d until %s",
					a.sender, a.msg, s, at(a.at), m.client, m.start, at(m.end))
				if m.faulted {
					detail += fmt.Sprintf(" (a fault hit its stream at %s; it received up to seq %d)", at(m.faultAt), m.lastIn)
				}
				l.v.Add(Evidence{Scope: m.scope, Seq: s, Client: m.client, At: a.at, Detail: detail})
			}
			return true
		})
	}
	if held == 0 && l.v.Violations == 0 {
		return notMeasurable(&l.v, "%d acknowledged messages, but no membership of their rooms was held to any of them "+
			"(%d shorter than the grace %s, %d with nothing acked while subscribed or cut by the server before receiving any; "+
			"%d not judged: their client got server messages it could not read%s)",
			total, short, l.p.Grace, owedNone, l.unread, l.unreadWhy)
	}
	summarise(&l.v, fmt.Sprintf("%d acknowledged messages; each of %d memberships received every one acked while it was subscribed (grace %s)", total, held, l.p.Grace),
		"%d acknowledged messages missing from members who were subscribed", l.v.Violations)
	if short+owedNone > 0 {
		l.v.Summary += fmt.Sprintf("; %d membership(s) owed nothing (%d shorter than the grace, %d with nothing acked while subscribed or cut before receiving any)",
			short+owedNone, short, owedNone)
	}
	if l.unread > 0 {
		l.v.Summary += fmt.Sprintf("; %d membership(s) not judged: their client got server messages it could not read (unread events)%s", l.unread, l.unreadWhy)
	}
	if l.graceCut > 0 {
		l.v.Summary += fmt.Sprintf("; %d membership(s) held only up to their last seq received: the harness ended their stream when the server had not ended it within the close grace", l.graceCut)
	}
	return l.v
}

// sortMembers orders keys by client, then scope (deterministic evidence).
func sortMembers(keys []memberKey) {
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].client != keys[j].client {
			return keys[i].client < keys[j].client
		}
		return keys[i].scope < keys[j].scope
	})
}
