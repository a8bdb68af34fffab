// Package metrics aggregates a run's events into latency histograms, counters
// and a bounded timeline, and fills the figures of a result.Scenario.
// Aggregation only: rendering lives in package report.
//
// A Collector is owned by one goroutine (the engine's dispatcher): Observe,
// Finish and Fill are not safe for concurrent use. Memory is bounded however
// long the run: a fixed set of HDR histograms per role, and a timeline of at
// most result.MaxTimeline points whose interval doubles when it is full.
package metrics

import (
	"fmt"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
)

// Histogram range: 1 µs .. 60 s at 3 significant digits, values in µs.
const (
	minMicros = 1
	maxMicros = 60_000_000
	sigDigits = 3
)

// NewHistogram returns an empty histogram with the harness's range (values
// in microseconds).
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(minMicros, maxMicros, sigDigits)
}

func record(h *hdrhistogram.Histogram, d time.Duration) {
	us := d.Microseconds()
	if us < minMicros {
		us = minMicros
	}
	if us > maxMicros {
		us = maxMicros
	}
	_ = h.RecordValue(us)
}

// RoleInfo names one role for the collector.
type RoleInfo struct {
	Name      string
	Behaviour string
	Clients   int
	// Attack marks a role whose behaviour attacks the server (flooder,
	// slow-reader, ...): its start and stop become markers.
	Attack bool
}

// roleStats is one role's aggregates.
type roleStats struct {
	info      RoleInfo
	msgs      result.Messages
	delivery  *hdrhistogram.Histogram // send-to-delivery
	ack       *hdrhistogram.Histogram // send-to-ack
	connect   *hdrhistogram.Histogram // stream setup
	firstMsg  *hdrhistogram.Histogram // connect to first delivery
	tickDelay *hdrhistogram.Histogram // input-to-update (game)
	tl        roleTimeline
}

// Collector aggregates events. Build it with New; feed it with Observe from
// one goroutine; read it with Fill after Finish.
type Collector struct {
	roles []roleStats
	// roleOf maps client index -> role index (no map lookups per event).
	roleOf []int
	// per-client state for time-to-first-message.
	connectedAt []time.Duration
	gotFirst    []bool

	overall *hdrhistogram.Histogram
	msgs    result.Messages
	errors  map[string]int
	clients int

	connected int
	timeline  timeline
	marks     markerLog
	end       time.Duration // Finish's
}

// DefaultInterval is the timeline's first interval.
const DefaultInterval = 250 * time.Millisecond

// New returns a Collector for roles; roleOf[i] is client i's role index.
func New(roles []RoleInfo, roleOf []int) *Collector {
	c := &Collector{
		roleOf:      roleOf,
		connectedAt: make([]time.Duration, len(roleOf)),
		gotFirst:    make([]bool, len(roleOf)),
		overall:     NewHistogram(),
		errors:      map[string]int{},
		clients:     len(roleOf),
	}
	for _, r := range roles {
		c.roles = append(c.roles, roleStats{info: r, delivery: NewHistogram(), ack: NewHistogram(),
			connect: NewHistogram(), firstMsg: NewHistogram(), tickDelay: NewHistogram()})
		c.roles[len(c.roles)-1].tl.tl.init(DefaultInterval)
	}
	c.timeline.init(DefaultInterval)
	c.marks.init(roles)
	return c
}

// AddError counts n harness-side problems under key (e.g.
// "harness:sender-behind"); keys without the "harness:" prefix are status
// code names.
func (c *Collector) AddError(key string, n int) {
	if n > 0 {
		c.errors[key] += n
	}
}

// Observe records one event: traffic counts, latencies, and under Errors
// every error event and every stream that ended with a non-OK status, by
// code name (a server's Error event and a status that ends a stream are
// both problems a client met), and every server message the harness could
// not read (UnreadKey). It does not block and allocates nothing on
// the hot paths (send, ack, deliver, tick).
func (c *Collector) Observe(e *event.Event) {
	c.timeline.advance(e.At)
	var r *roleStats
	ri := -1
	if e.Client >= 0 && e.Client < len(c.roleOf) {
		if ri = c.roleOf[e.Client]; ri >= 0 && ri < len(c.roles) {
			r = &c.roles[ri]
			r.tl.observe(e)
		}
	}
	c.marks.observe(e, ri)
	cur := c.timeline.cur()
	switch e.Kind {
	case event.Send:
		c.msgs.Sent++
		cur.sent++
		if r != nil {
			r.msgs.Sent++
		}
	case event.Ack:
		c.msgs.Acked++
		if r != nil {
			r.msgs.Acked++
			if e.Latency > 0 {
				record(r.ack, e.Latency)
			}
		}
	case event.Deliver:
		c.msgs.Delivered++
		cur.delivered++
		if e.Latency > 0 {
			record(c.overall, e.Latency)
			record(c.timeline.hist, e.Latency)
		}
		if r != nil {
			r.msgs.Delivered++
			if e.Latency > 0 {
				record(r.delivery, e.Latency)
			}
			if !c.gotFirst[e.Client] {
				c.gotFirst[e.Client] = true
				record(r.firstMsg, e.At-c.connectedAt[e.Client])
			}
		}
	case event.Tick:
		// Game updates are the game's deliveries; input-to-update is their
		// latency.
		c.msgs.Delivered++
		cur.delivered++
		if r != nil {
			r.msgs.Delivered++
		}
		if e.Latency > 0 {
			record(c.overall, e.Latency)
			record(c.timeline.hist, e.Latency)
			if r != nil {
				record(r.tickDelay, e.Latency)
			}
		}
	case event.Connect:
		c.connected++
		if r != nil {
			record(r.connect, e.Latency)
			if !c.gotFirst[e.Client] {
				c.connectedAt[e.Client] = e.At
			}
		}
	case event.Disconnect:
		c.connected = max(c.connected-1, 0)
		if e.Code != codes.OK {
			c.errors[CodeName(e.Code)]++
			cur.errors++
		}
	case event.Error:
		c.errors[CodeName(e.Code)]++
		cur.errors++
	case event.Unread:
		// A server message the harness could not read is the harness's
		// problem (a mapping that fails or misses a rule), not the server's:
		// counted apart from status codes and not on the timeline's error line.
		c.errors[UnreadKey(e.Field)]++
	}
	cur.connected = c.connected
}

// UnreadKey is the result.Scenario.Errors key of event.Unread events of
// field (event.UnreadError, event.UnreadUnmatched): "harness:unread-" field.
// The drivers emit at most event.MaxUnreadPerStream of them per stream, so the
// count is a lower bound of the messages not read.
func UnreadKey(field string) string { return "harness:unread-" + field }

// FromEvents reports whether Observe counts the Errors key from events
// (status codes, unread messages); the others come from AddError. A merge
// that replays the events recounts the former and must add only the latter.
func FromEvents(key string) bool {
	return !strings.HasPrefix(key, "harness:") || strings.HasPrefix(key, "harness:unread-")
}

var codeNames = [...]string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}

// CodeName is a status code's canonical name (google.rpc.Code), e.g.
// "RESOURCE_EXHAUSTED": the keys of result.Scenario.Errors.
func CodeName(c codes.Code) string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "CODE_" + c.String()
}

// Finish closes the timeline at the run's end (time since start).
func (c *Collector) Finish(at time.Duration) {
	c.timeline.advance(at)
	c.timeline.close(at)
	for i := range c.roles {
		c.roles[i].tl.finish(at)
	}
	c.end = at
}

// Connected is the number of open streams seen so far.
func (c *Collector) Connected() int { return c.connected }

// Messages is the traffic so far.
func (c *Collector) Messages() result.Messages { return c.msgs }

// LatencyQuantile is the overall send-to-delivery latency at quantile q
// (0..100) so far; 0 before the first sample. It walks the histogram's
// buckets: call it every so often, not per event.
func (c *Collector) LatencyQuantile(q float64) time.Duration {
	if c.overall.TotalCount() == 0 {
		return 0
	}
	return time.Duration(c.overall.ValueAtQuantile(q)) * time.Microsecond
}

// ErrorsByCode is a copy of the error counts so far, keyed like
// result.Scenario.Errors.
func (c *Collector) ErrorsByCode() map[string]int {
	out := make(map[string]int, len(c.errors))
	for k, v := range c.errors {
		out[k] = v
	}
	return out
}

// ErrorCount is the number of error events, kicks and non-OK stream ends.
func (c *Collector) ErrorCount() int {
	n := 0
	for _, v := range c.errors {
		n += v
	}
	return n
}

// Fill writes the collector's figures into s: Clients, Messages, LatencyMS,
// Errors, Roles (with their timelines), Timeline and Markers (faults and
// attacks; the engine adds the rest).
func (c *Collector) Fill(s *result.Scenario) {
	s.Clients = c.clients
	s.Messages = c.msgs
	s.LatencyMS = Summary(c.overall)
	s.Errors = make(map[string]int, len(c.errors))
	for k, v := range c.errors {
		s.Errors[k] = v
	}
	s.Roles = s.Roles[:0]
	for i := range c.roles {
		r := &c.roles[i]
		lat := r.delivery
		if lat.TotalCount() == 0 && r.tickDelay.TotalCount() > 0 {
			lat = r.tickDelay // game roles: input-to-update
		}
		s.Roles = append(s.Roles, result.Role{
			Name: r.info.Name, Behaviour: r.info.Behaviour, Clients: r.info.Clients,
			Messages:       r.msgs,
			LatencyMS:      Summary(lat),
			ConnectMS:      Summary(r.connect),
			FirstMessageMS: Summary(r.firstMsg),
			Distribution:   Distribution(lat),
			Timeline:       r.tl.points(),
		})
	}
	s.Timeline = c.timeline.points()
	s.Markers = c.marks.markers(c.end)
}

// Histograms is the collector's histograms in exportable form, for merging
// sharded runs.
type Histograms struct {
	Overall *hdrhistogram.Snapshot    `json:"overall"`
	Roles   map[string]RoleHistograms `json:"roles"`
}

// RoleHistograms is one role's histograms.
type RoleHistograms struct {
	Delivery     *hdrhistogram.Snapshot `json:"delivery"`
	Ack          *hdrhistogram.Snapshot `json:"ack"`
	Connect      *hdrhistogram.Snapshot `json:"connect"`
	FirstMessage *hdrhistogram.Snapshot `json:"first_message"`
	Tick         *hdrhistogram.Snapshot `json:"tick"`
}

// Export returns snapshots of every histogram.
func (c *Collector) Export() Histograms {
	h := Histograms{Overall: c.overall.Export(), Roles: map[string]RoleHistograms{}}
	for _, r := range c.roles {
		h.Roles[r.info.Name] = RoleHistograms{Delivery: r.delivery.Export(), Ack: r.ack.Export(),
			Connect: r.connect.Export(), FirstMessage: r.firstMsg.Export(), Tick: r.tickDelay.Export()}
	}
	return h
}

// Merge adds other's histograms into h (exact: HDR histograms merge without
// loss). Snapshots are validated first; an invalid one is an error.
func (h *Histograms) Merge(other Histograms) error {
	merge := func(dst **hdrhistogram.Snapshot, src *hdrhistogram.Snapshot) error {
		if src == nil {
			return nil
		}
		if err := src.Validate(); err != nil {
			return fmt.Errorf("merge histograms: %w", err)
		}
		if *dst == nil {
			*dst = src
			return nil
		}
		if err := (*dst).Validate(); err != nil {
			return fmt.Errorf("merge histograms: %w", err)
		}
		a := hdrhistogram.Import(*dst)
		a.Merge(hdrhistogram.Import(src))
		*dst = a.Export()
		return nil
	}
	if err := merge(&h.Overall, other.Overall); err != nil {
		return err
	}
	if h.Roles == nil {
		h.Roles = map[string]RoleHistograms{}
	}
	for name, o := range other.Roles {
		r := h.Roles[name]
		for _, p := range []struct {
			dst **hdrhistogram.Snapshot
			src *hdrhistogram.Snapshot
		}{{&r.Delivery, o.Delivery}, {&r.Ack, o.Ack}, {&r.Connect, o.Connect}, {&r.FirstMessage, o.FirstMessage}, {&r.Tick, o.Tick}} {
			if err := merge(p.dst, p.src); err != nil {
				return err
			}
		}
		h.Roles[name] = r
	}
	return nil
}

// Summary is the percentile summary of a µs histogram in milliseconds.
func Summary(h *hdrhistogram.Histogram) result.Latency {
	n := h.TotalCount()
	if n == 0 {
		return result.Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return result.Latency{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Count: n,
	}
}

// distributionBounds are the chart buckets' upper bounds in ms.
var distributionBounds = []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 60000}

// Distribution is a coarse bucketed view of a µs histogram for charts;
// nil when empty.
func Distribution(h *hdrhistogram.Histogram) []result.Bucket {
	if h.TotalCount() == 0 {
		return nil
	}
	out := make([]result.Bucket, len(distributionBounds))
	for i, b := range distributionBounds {
		out[i].LeMS = b
	}
	for _, br := range h.Distribution() {
		if br.Count == 0 {
			continue
		}
		ms := float64(br.To) / 1000
		i := 0
		for i < len(distributionBounds)-1 && ms > distributionBounds[i] {
			i++
		}
		out[i].Count += br.Count
	}
	return out
}
