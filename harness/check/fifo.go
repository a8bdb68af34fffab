package check

import (
	"context"
	"fmt"
	"sort"

	"github.com/bidikit/bidikit/harness/event"
)

// fifo is the "sender-fifo" checker: one sender's messages in a room must
// get room sequence numbers in the order of their sender sequence numbers.
// It judges by the room order every observer reports (acks and
// deliveries), so it also catches a server that reorders a sender's
// messages for some members only (together with "total-order"). Only
// messages this run sent are judged: a room's older history (an earlier
// run's messages replayed to a resumer, with sender seqs that restarted)
// belongs to other sender sessions.
type fifo struct {
	rooms map[string]map[uint64]senderPos // room -> seq -> who
	// ours: msgKey(user, msgID) of this run's sends -> the first room seq
	// seen for it (0: none yet); a second copy at another seq is
	// "no-duplicates"' finding, not an order violation.
	ours map[uint64]uint64
	seen int
	v    Verdict
}

type senderPos struct {
	sender    string
	senderSeq uint64
	msgID     string
}

func init() {
	Register("sender-fifo", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &fifo{rooms: map[string]map[uint64]senderPos{}, ours: map[uint64]uint64{}, v: Verdict{Name: "sender-fifo"}}, nil
	})
}

func (f *fifo) Observe(e *event.Event) {
	var p senderPos
	switch e.Kind {
	case event.Send:
		if k := msgKey(e.User, e.MsgID); e.MsgID != "" {
			if _, ok := f.ours[k]; !ok {
				f.ours[k] = 0
			}
		}
		return
	case event.Deliver:
		p = senderPos{e.Sender, e.SenderSeq, e.MsgID}
	case event.Ack:
		if e.Duplicate {
			return
		}
		p = senderPos{e.User, e.SenderSeq, e.MsgID}
	default:
		return
	}
	key := msgKey(p.sender, p.msgID)
	first, ours := f.ours[key]
	if e.Seq == 0 || p.senderSeq == 0 || !ours || (first != 0 && first != e.Seq) {
		return
	}
	f.ours[key] = e.Seq
	room := f.rooms[e.Scope]
	if room == nil {
		room = map[uint64]senderPos{}
		f.rooms[e.Scope] = room
	}
	if _, ok := room[e.Seq]; !ok {
		room[e.Seq] = p
		f.seen++
	}
}

func (f *fifo) Verdict(context.Context, Env) Verdict {
	if f.seen == 0 {
		f.v.Status = NotMeasurable
		f.v.Summary = "no sequenced messages with sender sequence numbers observed"
		return f.v
	}
	names := make([]string, 0, len(f.rooms))
	for r := range f.rooms {
		names = append(names, r)
	}
	sort.Strings(names)
	compared := 0 // messages ordered against an earlier one of their sender
	for _, r := range names {
		room := f.rooms[r]
		seqs := make([]uint64, 0, len(room))
		for s := range room {
			seqs = append(seqs, s)
		}
		sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
		last := map[string]struct {
			senderSeq, seq uint64
			msgID          string
		}{}
		for _, s := range seqs {
			p := room[s]
			prev, ok := last[p.sender]
			if ok {
				compared++
			}
			if ok && p.senderSeq <= prev.senderSeq {
				f.v.Add(Evidence{Scope: r, Seq: s, Client: p.sender,
					Detail: fmt.Sprintf("sender %s: message %s (sender seq %d) ordered at seq %d, after %s (sender seq %d) at seq %d",
						p.sender, p.msgID, p.senderSeq, s, prev.msgID, prev.senderSeq, prev.seq)})
			}
			if !ok || p.senderSeq > prev.senderSeq {
				last[p.sender] = struct {
					senderSeq, seq uint64
					msgID          string
				}{p.senderSeq, s, p.msgID}
			}
		}
	}
	if compared == 0 {
		return notMeasurable(&f.v, "%d sequenced messages, but no sender had two in one room: no order to keep", f.seen)
	}
	summarise(&f.v, fmt.Sprintf("%d messages kept their senders' order", f.seen),
		"%d messages ordered against their sender's order", f.v.Violations)
	return f.v
}
