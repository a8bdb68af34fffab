package check

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/bidikit/bidikit/harness/event"
)

// convergence is the "convergence" checker for collaborative editing: after
// the quiet time every replica's final text (Replica events) must equal the
// server's text (ServerState events) at the same version, every acked
// operation's version must lie within the server's history, and no replica
// may have converged only by giving up on the op stream: a rebuild from a
// snapshot that what the server sent forced, unannounced, fails it too (see
// rebuilds).
type convergence struct {
	replicas map[string][]replica // document -> replicas
	server   map[string]replica   // document -> server state
	acks     map[string]uint64    // document -> highest acked version
	ackWho   map[string]string
	// missing: editors that ended without a replica, and why.
	missing  []string
	nMissing int
	rebuilds rebuilds
	v        Verdict
}

type replica struct {
	client  string
	version uint64
	text    string
}

func init() {
	Register("convergence", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &convergence{replicas: map[string][]replica{}, server: map[string]replica{},
			acks: map[string]uint64{}, ackWho: map[string]string{}, rebuilds: newRebuilds(), v: Verdict{Name: "convergence"}}, nil
	})
}

func (c *convergence) Observe(e *event.Event) {
	c.rebuilds.observe(e, &c.v)
	switch e.Kind {
	case event.Replica:
		if e.Field == event.FieldNoReplica {
			if len(c.missing) < MaxEvidence {
				c.missing = append(c.missing, fmt.Sprintf("%s of %s (%s)", clientName(e), e.Scope, e.Detail))
			}
			c.nMissing++
			return
		}
		c.replicas[e.Scope] = append(c.replicas[e.Scope], replica{clientName(e), e.Seq, e.Text})
	case event.ServerState:
		if old, ok := c.server[e.Scope]; !ok || e.Seq >= old.version {
			c.server[e.Scope] = replica{clientName(e), e.Seq, e.Text}
		}
	case event.Ack:
		if e.Seq > c.acks[e.Scope] {
			c.acks[e.Scope] = e.Seq
			c.ackWho[e.Scope] = clientName(e)
		}
	}
}

// diff describes the first difference between two texts with context.
func diff(want, got string) string {
	w, g := []rune(want), []rune(got)
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	ctx := func(r []rune) string {
		lo, hi := max(0, i-20), min(len(r), i+20)
		return strings.ReplaceAll(string(r[lo:hi]), "\n", "⏎")
	}
	return fmt.Sprintf("first difference at code point %d (server %d code points, replica %d): server …%s… replica …%s…",
		i, len(w), len(g), ctx(w), ctx(g))
}

func (c *convergence) Verdict(context.Context, Env) Verdict {
	docs := make([]string, 0, len(c.replicas))
	for d := range c.replicas {
		docs = append(docs, d)
	}
	sort.Strings(docs)
	n := 0
	var unread []string
	for _, d := range docs {
		srv, ok := c.server[d]
		if !ok {
			unread = append(unread, d)
			continue
		}
		for _, r := range c.replicas[d] {
			n++
			switch {
			case r.version != srv.version:
				c.v.Add(Evidence{Scope: d, Seq: r.version, Client: r.client,
					Detail: fmt.Sprintf("replica of %s stopped at version %d, server is at %d", r.client, r.version, srv.version)})
			case r.text != srv.text:
				c.v.Add(Evidence{Scope: d, Seq: r.version, Client: r.client,
					Detail: fmt.Sprintf("replica of %s diverged at version %d: %s", r.client, r.version, diff(srv.text, r.text))})
			}
		}
		if a := c.acks[d]; a > srv.version {
			c.v.Add(Evidence{Scope: d, Seq: a, Client: c.ackWho[d],
				Detail: fmt.Sprintf("operation acked as version %d, but the server's history ends at version %d", a, srv.version)})
		}
	}
	if c.v.Violations == 0 {
		if c.nMissing > 0 {
			// A replica not reported may be the one that diverged.
			return notMeasurable(&c.v, "%d editor(s) ended without a replica to judge: %s; %d replicas judged", c.nMissing, strings.Join(c.missing, "; "), n)
		}
		if len(unread) > 0 {
			return notMeasurable(&c.v, "the server's text of %d document(s) could not be read (%s); %d replicas judged", len(unread), strings.Join(unread, ", "), n)
		}
		if n == 0 {
			return notMeasurable(&c.v, "no replica states observed")
		}
	}
	summarise(&c.v, fmt.Sprintf("%d replicas over %d documents converged to the server's text", n, len(docs)),
		"%d replicas or documents did not converge, or converged only from a snapshot", c.v.Violations)
	c.v.Summary += "; " + c.rebuilds.summary()
	return c.v
}
