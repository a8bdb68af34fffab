package result

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/bidikit/bidikit/harness/check"
)

// Marker is one moment on a scenario's time axis that explains its charts:
// a fault firing, an attack starting or stopping, the server killed or
// restarted, a failed check's first violation. Plain data, JSON-shaped as
// documented in docs/scenarios.md; the metrics collector fills the ones it
// sees in the event stream (faults, attacks), the engine the rest.
type Marker struct {
	// AtS is the time since the run started, in seconds.
	AtS float64 `json:"at_s"`
	// Kind is one of the Mark* constants.
	Kind string `json:"kind"`
	// Label names it in a few words: the fault, the role, the check.
	Label string `json:"label"`
	// Detail is its evidence in a sentence: whom the fault hit, what the
	// check found and where.
	Detail string `json:"detail,omitempty"`
}

// Marker kinds.
const (
	// MarkFault: a fault fired (one marker per firing, however many
	// clients it hit). Label = the fault's name.
	MarkFault = "fault"
	// MarkAttackStart: the first client of a role with attack behaviour
	// (flooder, slow-reader, ...) started. Label = the role.
	MarkAttackStart = "attack-start"
	// MarkAttackStop: the last stream of an attack role ended before the
	// run's end. Label = the role.
	MarkAttackStop = "attack-stop"
	// MarkServerKill: the kill-server fault killed the spawned server.
	MarkServerKill = "server-kill"
	// MarkServerRestart: the spawned server served again after a kill
	// (or failed to: Detail says so).
	MarkServerRestart = "server-restart"
	// MarkViolation: the first violation of a failed check. Label = the
	// check's name.
	MarkViolation = "violation"
)

// MaxMarkers bounds the fault markers of one scenario (a fault that fires
// every 100ms for an hour is not 36,000 markers); the last one kept says
// how many later firings were left out. Other kinds are few by nature.
const MaxMarkers = 200

// SortMarkers orders ms by time, then kind and label (stable output).
func SortMarkers(ms []Marker) {
	sort.SliceStable(ms, func(i, j int) bool {
		if ms[i].AtS != ms[j].AtS {
			return ms[i].AtS < ms[j].AtS
		}
		if ms[i].Kind != ms[j].Kind {
			return ms[i].Kind < ms[j].Kind
		}
		return ms[i].Label < ms[j].Label
	})
}

// MarkViolations appends a MarkViolation marker for each failed check of
// s, at its first violation: the earliest time in its evidence, else
// firstSeen[i] (when the run's live polling saw check i's first violation;
// nil or 0 = unknown), else the run's end, when the check judged (Detail
// then says the time is not known). Call it once, after s.Checks and
// s.DurationS are set.
func (s *Scenario) MarkViolations(firstSeen []time.Duration) {
	for i, v := range s.Checks {
		if v.Status != check.Fail {
			continue
		}
		at, ev, known := firstViolation(v)
		how := ""
		if !known && i < len(firstSeen) && firstSeen[i] > 0 {
			at, known = firstSeen[i], true
			how = "first seen while the run went on; "
		}
		if !known {
			at = time.Duration(s.DurationS * float64(time.Second))
			how = "time not known: judged at the end of the run; "
		}
		s.Markers = append(s.Markers, Marker{
			AtS: at.Seconds(), Kind: MarkViolation, Label: v.Name,
			Detail: fmt.Sprintf("%s%s: %s%s", how, plural(v.Violations, "violation"), v.Summary, evidenceText(ev)),
		})
	}
	SortMarkers(s.Markers)
}

// firstViolation is the piece of evidence of v with the earliest time, and
// that time; known is false when no piece has one (ev is then the first
// piece, if any).
func firstViolation(v check.Verdict) (at time.Duration, ev *check.Evidence, known bool) {
	for i := range v.Evidence {
		e := &v.Evidence[i]
		if e.At > 0 && (!known || e.At < at) {
			at, ev, known = e.At, e, true
		}
	}
	if !known && len(v.Evidence) > 0 {
		ev = &v.Evidence[0]
	}
	return at, ev, known
}

// evidenceText is one piece of evidence as " — scope=… seq=… client=…
// detail", or "" for none.
func evidenceText(e *check.Evidence) string {
	if e == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString(" — ")
	if e.Scope != "" {
		fmt.Fprintf(&b, "scope=%s ", e.Scope)
	}
	if e.Seq != 0 {
		fmt.Fprintf(&b, "seq=%d ", e.Seq)
	}
	if e.Client != "" {
		fmt.Fprintf(&b, "client=%s ", e.Client)
	}
	b.WriteString(e.Detail)
	return strings.TrimRight(b.String(), " ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// MarkersOf is the markers of ms of one kind, in their order.
func MarkersOf(ms []Marker, kind string) []Marker {
	var out []Marker
	for _, m := range ms {
		if m.Kind == kind {
			out = append(out, m)
		}
	}
	return out
}
