package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// gaps is the "no-gaps" checker: within one membership (a Join until its
// Leave, its stream's Disconnect or the next Join) a member must receive
// every seq from its first expected one (the join's head+1, or the first
// replayed seq) up to the highest it received. A seq missing below one that
// arrived is a gap, whatever the arrival order: a late arrival fills its
// hole ("delivery-order" judges the order), and what was never followed by
// a higher seq is judged by "no-lost-acks". Membership ends are where the
// holes are judged. A membership whose client received a message it could
// not read (event.Unread) is not judged: the hole may be that message.
type gaps struct {
	members    memberships[*gapState]
	deliveries int // to any membership
	// judged counts the memberships judged (read, with a delivery) and
	// judgedDeliveries what they received; empty ones received nothing.
	judged, judgedDeliveries, empty int
	unread                          int // memberships not judged: their client could not read a message
	unreadWhy                       unreadNote
	// unreadStream: clients whose current stream carried a message they
	// could not read (past the per-stream cap of Unread events, a later
	// membership's messages may be among them); cleared on Connect.
	unreadStream map[int]bool
	v            Verdict
}

type gapState struct {
	client string
	start  uint64
	got    seqSet
	n      int  // deliveries received
	unread bool // its client received a message it could not read
}

func init() {
	Register("no-gaps", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &gaps{members: newMemberships[*gapState](), unreadStream: map[int]bool{}, v: Verdict{Name: "no-gaps"}}, nil
	})
}

// judge reports membership k's holes (it has ended).
func (g *gaps) judge(k memberKey, s *gapState) {
	if s.unread {
		return
	}
	if s.n == 0 {
		g.empty++
		return // nothing received: nothing to hold a hole against
	}
	g.judged++
	g.judgedDeliveries += s.n
	top := s.got.max()
	s.got.holes(s.start, top, func(from, to uint64) bool {
		n := to - from + 1
		what := fmt.Sprintf("seq %d", from)
		if n > 1 {
			what = fmt.Sprintf("seqs %d..%d", from, to)
		}
		g.v.Add(Evidence{Scope: k.scope, Seq: from, Client: s.client,
			Detail: fmt.Sprintf("%s never received %s (%d message(s)) but received seq %d after them; membership from seq %d", s.client, what, n, top, s.start)})
		return true
	})
}

func (g *gaps) Observe(e *event.Event) {
	if e.Kind == event.Connect {
		delete(g.unreadStream, e.Client)
	}
	if e.Kind == event.Unread {
		g.unreadWhy.see(e)
		g.unreadStream[e.Client] = true
		g.members.ofClient(e.Client, func(_ memberKey, s *gapState) {
			if !s.unread {
				s.unread = true
				g.unread++
			}
		})
		return
	}
	g.members.track(e, func(e *event.Event) *gapState {
		s := &gapState{client: clientName(e), start: firstExpected(e)}
		if g.unreadStream[e.Client] {
			s.unread = true
			g.unread++
		}
		return s
	}, g.judge)
	if e.Kind == event.Deliver {
		if s, ok := g.members.get(e); ok && e.Seq >= s.start {
			g.deliveries++
			s.n++
			s.got.add(e.Seq)
		}
	}
}

func (g *gaps) Verdict(context.Context, Env) Verdict {
	g.members.closeAll(g.judge)
	if g.deliveries == 0 {
		return notMeasurable(&g.v, "no deliveries to a joined member observed (%d memberships)", g.members.opened)
	}
	if g.judged == 0 && g.v.Violations == 0 {
		return notMeasurable(&g.v, "no membership judged of %d: %d not judged because their client received server messages it could not read "+
			"(unread events; any hole may be one of them)%s, %d received nothing", g.members.opened, g.unread, g.unreadWhy, g.empty)
	}
	summarise(&g.v, fmt.Sprintf("%d memberships (%d deliveries) received every seq up to the highest they got", g.judged, g.judgedDeliveries),
		"%d gaps in members' deliveries", g.v.Violations)
	if g.empty > 0 {
		g.v.Summary += fmt.Sprintf("; %d membership(s) received nothing", g.empty)
	}
	if g.unread > 0 {
		g.v.Summary += fmt.Sprintf("; %d membership(s) not judged: their client received server messages it could not read%s", g.unread, g.unreadWhy)
	}
	return g.v
}
