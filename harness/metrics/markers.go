package metrics

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
)

// killServerFault is the fault whose firing is a server kill
// (harness/fault/kill_server.go).
const killServerFault = "kill-server"

// unnumberedWindow joins the Fault events of one firing when the events do
// not say which firing they belong to (Seq 0: raw files of older runs):
// one firing's events are emitted in one loop, far closer than this.
const unnumberedWindow = 500 * time.Millisecond

// markerLog collects the markers the event stream shows (result.Marker):
// one per fault firing, however many clients it hit, and each attack
// role's start and stop. Owned by the collector's goroutine; bounded by
// result.MaxMarkers firings and the number of roles.
type markerLog struct {
	faults  []faultMark
	byKey   map[faultKey]int // -> index in faults
	dropped int              // firings past result.MaxMarkers
	// attackPhase is the engine's "attack" Phase event (-1: none), used
	// when no role is flagged as an attack role.
	attackPhase time.Duration
	roles       []attackMark // per role index; attack=false for honest roles
}

type faultKey struct {
	name   string
	firing uint64
}

type faultMark struct {
	at      time.Duration
	name    string
	runWide bool
	clients int
	roles   []string // the roles of the clients it hit (at most every role)
}

type attackMark struct {
	name, behaviour string
	attack          bool
	clients         int
	seen            bool          // an event of the role arrived
	startAt         time.Duration // its earliest event
	lastEnd         time.Duration // its latest Disconnect (or HTTP/2 attack stop)
	open            int           // streams (or HTTP/2 attacks) open now
}

func (m *markerLog) init(roles []RoleInfo) {
	m.byKey = map[faultKey]int{}
	m.attackPhase = -1
	for _, r := range roles {
		m.roles = append(m.roles, attackMark{name: r.Name, behaviour: r.Behaviour, attack: r.Attack, clients: r.Clients})
	}
}

// observe notes e; ri is the index of e's client's role (-1: none).
func (m *markerLog) observe(e *event.Event, ri int) {
	switch e.Kind {
	case event.Fault: // the harness's doing, not the role's activity
		m.fault(e, ri)
		return
	case event.Phase:
		if e.Detail == "attack" && m.attackPhase < 0 {
			m.attackPhase = e.At
		}
	}
	if ri < 0 || ri >= len(m.roles) || !m.roles[ri].attack {
		return
	}
	a := &m.roles[ri]
	if !a.seen || e.At < a.startAt {
		a.seen, a.startAt = true, e.At
	}
	switch {
	case e.Kind == event.Connect, e.Kind == event.Attack && e.Field == event.AttackStart:
		a.open++ // a stream, or an HTTP/2 attack below gRPC (which opens no gRPC stream)
	case e.Kind == event.Disconnect, e.Kind == event.Attack && e.Field == event.AttackStop:
		a.open = max(a.open-1, 0)
		a.lastEnd = max(a.lastEnd, e.At)
	}
}

// fault joins e to its firing's marker, or starts one.
func (m *markerLog) fault(e *event.Event, ri int) {
	key := faultKey{name: e.Detail, firing: e.Seq}
	i, ok := m.byKey[key]
	if ok && e.Seq == 0 && (e.At-m.faults[i].at > unnumberedWindow || m.faults[i].at-e.At > unnumberedWindow) {
		ok = false
	}
	if !ok {
		if len(m.faults) >= result.MaxMarkers {
			m.dropped++
			return
		}
		m.faults = append(m.faults, faultMark{at: e.At, name: e.Detail})
		i = len(m.faults) - 1
		m.byKey[key] = i
	}
	f := &m.faults[i]
	f.at = min(f.at, e.At)
	if e.Client < 0 {
		f.runWide = true
		return
	}
	f.clients++
	if ri >= 0 && ri < len(m.roles) && !slices.Contains(f.roles, m.roles[ri].name) {
		f.roles = append(f.roles, m.roles[ri].name)
	}
}

// markers is the log as result markers, by time; end is the run's end
// (Finish): an attack role whose last stream ended within the last
// twentieth of the run (at least 500ms) ran until the end, and gets no
// stop marker.
func (m *markerLog) markers(end time.Duration) []result.Marker {
	var out []result.Marker
	for i, f := range m.faults {
		mk := result.Marker{AtS: f.at.Seconds(), Kind: result.MarkFault, Label: f.name}
		switch {
		case f.runWide && f.name == killServerFault:
			mk.Kind, mk.Detail = result.MarkServerKill, "fault kill-server: SIGKILL of the spawned server"
		case f.runWide:
			mk.Detail = fmt.Sprintf("fault %s fired on the whole run (every connection, or the server)", f.name)
		default:
			mk.Detail = fmt.Sprintf("fault %s fired on %s", f.name, clientsText(f.clients))
			if len(f.roles) > 0 {
				mk.Detail += " of role " + strings.Join(f.roles, ", ")
			}
		}
		if i == len(m.faults)-1 && m.dropped > 0 {
			mk.Detail += fmt.Sprintf(" (and %d later firings, not marked: at most %d are)", m.dropped, result.MaxMarkers)
		}
		out = append(out, mk)
	}
	flagged := false
	slack := max(500*time.Millisecond, end/20)
	for _, a := range m.roles {
		if !a.attack {
			continue
		}
		flagged = true
		if !a.seen {
			continue
		}
		out = append(out, result.Marker{AtS: a.startAt.Seconds(), Kind: result.MarkAttackStart, Label: a.name,
			Detail: fmt.Sprintf("role %s (%s, %s) started", a.name, a.behaviour, clientsText(a.clients))})
		if a.open == 0 && a.lastEnd > 0 && a.lastEnd < end-slack {
			out = append(out, result.Marker{AtS: a.lastEnd.Seconds(), Kind: result.MarkAttackStop, Label: a.name,
				Detail: fmt.Sprintf("role %s (%s): its last stream or attack ended", a.name, a.behaviour)})
		}
	}
	if !flagged && m.attackPhase >= 0 {
		out = append(out, result.Marker{AtS: m.attackPhase.Seconds(), Kind: result.MarkAttackStart, Label: "attack",
			Detail: "the first client with an attack behaviour started"})
	}
	result.SortMarkers(out)
	return out
}

func clientsText(n int) string {
	if n == 1 {
		return "1 client"
	}
	return fmt.Sprintf("%d clients", n)
}
