package check

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
)

// rebuilds is convergence's account of how the replicas got their
// versions: op by op, or from snapshots, and which snapshots the op stream
// forced. A collab client that gives its replica up (event.AnomalyResync)
// reopens the document from a snapshot and converges anyway, so the final
// texts alone would hide a server whose op stream skips, repeats or
// reorders versions: a rebuild the server did not announce (Code OK: no
// Error refused the client's op) is a violation; an announced one is
// counted in the summary. Owned by the convergence checker.
type rebuilds struct {
	unannounced int
	announced   map[codes.Code]int
	// absorbed counts the other anomalies clients reported, by name: the
	// ordering checks judge them; the summary mentions them.
	absorbed map[string]int
	// incremental and snapshot sum the Replica events' versions applied op
	// by op and taken from snapshots.
	incremental, snapshot uint64
}

func newRebuilds() rebuilds {
	return rebuilds{announced: map[codes.Code]int{}, absorbed: map[string]int{}}
}

// observe takes Anomaly and Replica events; a forced rebuild goes to v.
func (r *rebuilds) observe(e *event.Event, v *Verdict) {
	switch e.Kind {
	case event.Replica:
		if e.Field == event.FieldNoReplica {
			return
		}
		inc := min(e.SenderSeq, e.Seq)
		r.incremental += inc
		r.snapshot += e.Seq - inc
	case event.Anomaly:
		if e.Field != event.AnomalyResync {
			r.absorbed[e.Field]++
			return
		}
		if e.Code != codes.OK {
			r.announced[e.Code]++
			return
		}
		r.unannounced++
		who := clientName(e)
		v.Add(Evidence{Scope: e.Scope, Seq: e.Seq, Client: who, At: e.At,
			Detail: fmt.Sprintf("%s rebuilt its replica from a snapshot at %s because of what the server sent, which announced no reason: %s",
				who, at(e.At), e.Detail)})
	}
}

// summary describes how the replicas got their versions, for the verdict.
func (r *rebuilds) summary() string {
	s := fmt.Sprintf("%d versions applied op by op, %d taken from snapshots when opening", r.incremental, r.snapshot)
	if r.unannounced == 0 {
		s += "; no replica had to be rebuilt because of the op stream"
	} else {
		s += fmt.Sprintf("; %d replica(s) rebuilt from a snapshot because the op stream broke", r.unannounced)
	}
	if len(r.announced) > 0 {
		var parts []string
		for c, n := range r.announced {
			parts = append(parts, fmt.Sprintf("%d after %s", n, codeName(c)))
		}
		sort.Strings(parts)
		s += fmt.Sprintf(" (rebuilt for a reason the server gave: %s)", strings.Join(parts, ", "))
	}
	if len(r.absorbed) > 0 {
		var parts []string
		for f, n := range r.absorbed {
			parts = append(parts, fmt.Sprintf("%d %s", n, f))
		}
		sort.Strings(parts)
		s += fmt.Sprintf("; the op stream also had %s (judged by no-gaps, no-duplicates and delivery-order)", strings.Join(parts, ", "))
	}
	return s
}
