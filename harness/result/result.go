// Package result is the summary of a run that reports render: plain data,
// JSON-shaped as documented in docs/scenarios.md. Aggregation happens in the
// engine and metrics; rendering in package report.
package result

import (
	"time"

	"github.com/bidikit/bidikit/harness/check"
)

// Run is one invocation of `bidikit run` over one or more scenarios.
type Run struct {
	Passed    bool       `json:"passed"`
	Seed      int64      `json:"seed"`
	Target    string     `json:"target"`
	StartedAt time.Time  `json:"started_at"`
	Scenarios []Scenario `json:"scenarios"`
	// Interrupted says why the run stopped before every scenario had run
	// its course ("interrupted by SIGINT"); "" when it did not. An
	// interrupted run never passes.
	Interrupted string `json:"interrupted,omitempty"`
}

// Scenario is one scenario's outcome.
type Scenario struct {
	Name    string `json:"name"`
	File    string `json:"file"`
	Service string `json:"service"`
	Seed    int64  `json:"seed"`
	// RunID tells this run's messages from earlier runs' against the same
	// server: it is part of every chat client_msg_id and collab client_id.
	RunID     string          `json:"run_id,omitempty"`
	Passed    bool            `json:"passed"`
	DurationS float64         `json:"duration_s"`
	Clients   int             `json:"clients"`
	Messages  Messages        `json:"messages"`
	LatencyMS Latency         `json:"latency_ms"`
	Errors    map[string]int  `json:"errors"`
	Checks    []check.Verdict `json:"checks"`
	Roles     []Role          `json:"roles"`
	// Timeline holds one point per interval for charts (bounded: at most
	// MaxTimeline points; the interval grows for long runs).
	Timeline []Point `json:"timeline"`
	// Markers are the moments that explain the charts (faults, attacks,
	// server kills, first violations), by time (see markers.go).
	Markers []Marker `json:"markers,omitempty"`
	// Failure is set when the scenario could not run at all (target
	// unreachable, server failed to start); Passed is then false.
	Failure string `json:"failure,omitempty"`
	// Interrupted says why the scenario stopped before its duration ("" =
	// it ran its course): a signal ("interrupted by SIGINT at 3.2s of
	// 30s"), or --fail-fast at a check's first violation. Its checks then
	// judged what was seen until then; an interrupted scenario never
	// passes.
	Interrupted string `json:"interrupted,omitempty"`
}

// Messages counts traffic: Sent is chat sends, collab submits and game
// inputs; Acked their acknowledgements (chat, collab); Delivered what
// clients received from others: chat messages, collab remote ops, game tick
// updates.
type Messages struct {
	Sent      int64 `json:"sent"`
	Acked     int64 `json:"acked"`
	Delivered int64 `json:"delivered"`
}

// Latency is a percentile summary in milliseconds.
type Latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	// Count is the number of samples behind the percentiles.
	Count int64 `json:"count"`
}

// Role is per-role figures.
type Role struct {
	Name      string   `json:"name"`
	Behaviour string   `json:"behaviour"`
	Clients   int      `json:"clients"`
	Messages  Messages `json:"messages"`
	LatencyMS Latency  `json:"latency_ms"`
	// ConnectMS is stream setup time; FirstMessageMS time to first delivery.
	ConnectMS      Latency `json:"connect_ms"`
	FirstMessageMS Latency `json:"first_message_ms"`
	// Distribution is a coarse latency histogram for charts: upper bounds in
	// ms and counts.
	Distribution []Bucket `json:"distribution,omitempty"`
	// Timeline is this role's share of Scenario.Timeline, on the same
	// intervals: its clients' sends, deliveries, errors, open streams and
	// latency percentiles.
	Timeline []Point `json:"timeline,omitempty"`
}

// Bucket is one histogram bar.
type Bucket struct {
	LeMS  float64 `json:"le_ms"`
	Count int64   `json:"count"`
}

// Point is one interval of the run's timeline.
type Point struct {
	AtS             float64 `json:"at_s"`
	SentPerSec      float64 `json:"sent_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	ErrorsPerSec    float64 `json:"errors_per_sec"`
	Connected       int     `json:"connected"`
	P50MS           float64 `json:"p50_ms"`
	P99MS           float64 `json:"p99_ms"`
}

// MaxTimeline bounds Scenario.Timeline.
const MaxTimeline = 600
