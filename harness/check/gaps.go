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
// holes are judged.
type gaps struct {
	open       map[memberKey]*gapState
	members    int
	deliveries int
	v          Verdict
}

type gapState struct {
	client string
	start  uint64
	got    seqSet
}

func init() {
	Register("no-gaps", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &gaps{open: map[memberKey]*gapState{}, v: Verdict{Name: "no-gaps"}}, nil
	})
}

// close judges membership k's holes and forgets it.
func (g *gaps) close(k memberKey) {
	s := g.open[k]
	if s == nil {
		return
	}
	delete(g.open, k)
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
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Join:
		g.close(k)
		g.members++
		g.open[k] = &gapState{client: clientName(e), start: firstExpected(e)}
	case event.Leave:
		g.close(k)
	case event.Disconnect:
		for mk := range g.open {
			if mk.client == e.Client {
				g.close(mk)
			}
		}
	case event.Deliver:
		if s := g.open[k]; s != nil && e.Seq >= s.start {
			g.deliveries++
			s.got.add(e.Seq)
		}
	}
}

func (g *gaps) Verdict(context.Context, Env) Verdict {
	keys := make([]memberKey, 0, len(g.open))
	for k := range g.open {
		keys = append(keys, k)
	}
	sortMembers(keys)
	for _, k := range keys {
		g.close(k)
	}
	if g.deliveries == 0 {
		return notMeasurable(&g.v, "no deliveries to a joined member observed (%d memberships)", g.members)
	}
	summarise(&g.v, fmt.Sprintf("%d memberships (%d deliveries) received every seq up to the highest they got", g.members, g.deliveries),
		"%d gaps in members' deliveries", g.v.Violations)
	return g.v
}
