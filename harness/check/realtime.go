package check

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// realtime is the "realtime-order" checker: when message A was acked before
// message B was sent (by the harness's one clock), A's room seq must be
// lower than B's. Sends are matched to their acks by (sender, message id).
type realtime struct {
	sends map[string]map[uint64]time.Duration // room -> msg key -> first send time
	acks  map[string][]ackAt                  // room -> acks
	v     Verdict
}

type ackAt struct {
	at  time.Duration
	seq uint64
	key uint64
	msg string
}

func init() {
	Register("realtime-order", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &realtime{sends: map[string]map[uint64]time.Duration{}, acks: map[string][]ackAt{},
			v: Verdict{Name: "realtime-order"}}, nil
	})
}

func (r *realtime) Observe(e *event.Event) {
	switch e.Kind {
	case event.Send:
		if e.MsgID == "" {
			return
		}
		room := r.sends[e.Scope]
		if room == nil {
			room = map[uint64]time.Duration{}
			r.sends[e.Scope] = room
		}
		k := msgKey(e.User, e.MsgID)
		if _, ok := room[k]; !ok {
			room[k] = e.At
		}
	case event.Ack:
		if e.Seq > 0 && e.MsgID != "" && !e.Duplicate {
			r.acks[e.Scope] = append(r.acks[e.Scope], ackAt{e.At, e.Seq, msgKey(e.User, e.MsgID), e.User + "/" + e.MsgID})
		}
	}
}

func (r *realtime) Verdict(context.Context, Env) Verdict {
	n := 0
	rooms := make([]string, 0, len(r.acks))
	for room := range r.acks {
		rooms = append(rooms, room)
	}
	sort.Strings(rooms)
	for _, room := range rooms {
		acks := r.acks[room]
		sort.Slice(acks, func(i, j int) bool { return acks[i].at < acks[j].at })
		// prefix[i] = the ack with the highest seq among acks[0..i].
		prefix := make([]int, len(acks))
		for i := range acks {
			prefix[i] = i
			if i > 0 && acks[prefix[i-1]].seq > acks[i].seq {
				prefix[i] = prefix[i-1]
			}
		}
		sends := r.sends[room]
		for _, b := range acks {
			sentAt, ok := sends[b.key]
			if !ok {
				continue
			}
			n++
			// Acks strictly before B was sent.
			i := sort.Search(len(acks), func(i int) bool { return acks[i].at >= sentAt }) - 1
			if i < 0 {
				continue
			}
			a := acks[prefix[i]]
			if a.seq > b.seq {
				r.v.Add(Evidence{Scope: room, Seq: b.seq, At: sentAt,
					Detail: fmt.Sprintf("%s was acked at seq %d at %s, before %s was sent at %s, yet %s got the lower seq %d",
						a.msg, a.seq, at(a.at), b.msg, at(sentAt), b.msg, b.seq)})
			}
		}
	}
	if n == 0 {
		r.v.Status = NotMeasurable
		r.v.Summary = "no sends matched to acks"
		return r.v
	}
	summarise(&r.v, fmt.Sprintf("%d acked messages respect real-time order", n),
		"%d messages ordered before a message acked before they were sent", r.v.Violations)
	return r.v
}
