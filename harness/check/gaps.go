package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// gaps is the "no-gaps" checker: after a member joins (or resumes) a room,
// its deliveries must continue 1 by 1 from the first expected seq; a jump is
// a gap. A repeated or lower seq is left to "no-duplicates". Memberships end
// with Leave, Disconnect or a new Join.
type gaps struct {
	next    map[memberKey]uint64
	members int
	v       Verdict
}

func init() {
	Register("no-gaps", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &gaps{next: map[memberKey]uint64{}, v: Verdict{Name: "no-gaps"}}, nil
	})
}

func (g *gaps) Observe(e *event.Event) {
	switch e.Kind {
	case event.Join:
		g.members++
		g.next[memberKey{e.Client, e.Scope}] = firstExpected(e)
	case event.Leave:
		delete(g.next, memberKey{e.Client, e.Scope})
	case event.Disconnect:
		for k := range g.next {
			if k.client == e.Client {
				delete(g.next, k)
			}
		}
	case event.Deliver:
		k := memberKey{e.Client, e.Scope}
		want, ok := g.next[k]
		if !ok || e.Seq < want {
			return
		}
		if e.Seq > want {
			g.v.Add(Evidence{Scope: e.Scope, Seq: want, Client: clientName(e), At: e.At,
				Detail: fmt.Sprintf("%s expected seq %d next but got %d: %d message(s) missing", clientName(e), want, e.Seq, e.Seq-want)})
		}
		g.next[k] = e.Seq + 1
	}
}

func (g *gaps) Verdict(context.Context, Env) Verdict {
	if g.members == 0 {
		g.v.Status = NotMeasurable
		g.v.Summary = "no room joins observed"
		return g.v
	}
	summarise(&g.v, fmt.Sprintf("%d memberships received every sequence number without a gap", g.members),
		"%d gaps in members' deliveries", g.v.Violations)
	return g.v
}
