// Package bench runs bidikit's fixed benchmark workloads (chat fan-out, chat
// echo, collab trace replay, game ticks, connection ramp) against a bidikit
// server and renders their results: a text table, JSON, HTML with inline SVG
// charts, and a comparison of repeated runs with a noise verdict.
//
// Results are plain data (Result); running (Run), rendering (Text, JSON,
// HTML) and comparing (Compare) are separate. The generic driver for any gRPC
// bidi method lives in bench/generic and reports the same Result.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
)

// Result is one benchmark run, JSON-shaped as `bidikit bench --json` writes
// it. Figures that do not apply or are unknown are zero and omitted.
type Result struct {
	// Workload is the workload name ("chat-echo", ..., "generic").
	Workload string `json:"workload"`
	// Tool says what drove the load: "bidikit-engine" (the harness engine),
	// "bidikit-loop" (bench's own generated-stub loops),
	// "bidikit-saturating", "bidikit-paced", "bidikit-windowed" or
	// "bidikit-interval" (the generic driver, in that mode: see
	// bench/generic), "ghz" (plain ghz) or "baseline" (a bare generated-stub
	// loop).
	Tool   string            `json:"tool,omitempty"`
	Target string            `json:"target,omitempty"`
	Params map[string]string `json:"params"`
	// DurationS is the measured interval in seconds.
	DurationS float64 `json:"duration_s"`
	// Messages counts messages sent by clients; MessagesPerSec is it over
	// DurationS.
	Messages       int64   `json:"messages"`
	MessagesPerSec float64 `json:"messages_per_sec"`
	// Deliveries counts messages received by clients (fan-out: one send is
	// delivered to every member of the room).
	Deliveries       int64   `json:"deliveries,omitempty"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	// LatencyMS is the per-message latency (what it measures depends on the
	// workload: see LatencyOf).
	LatencyMS Latency `json:"latency_ms"`
	// LatencyOf names what LatencyMS measures.
	LatencyOf string `json:"latency_of,omitempty"`
	// Errors counts failures by kind (status code names, or a short key).
	Errors map[string]int64 `json:"errors,omitempty"`
	// ServerRSSBytes is the server's resident memory after the run when
	// known (admin /metrics process_resident_memory_bytes); in-process it is
	// the process's, server and harness together.
	ServerRSSBytes  int64 `json:"server_rss_bytes,omitempty"`
	HarnessRSSBytes int64 `json:"harness_rss_bytes,omitempty"`
	// Extra holds workload-specific figures (streams held, bytes per stream,
	// final text length, leak verdict, ...).
	Extra map[string]float64 `json:"extra,omitempty"`
	// Notes are human-readable remarks (leak verdict, caveats).
	Notes []string `json:"notes,omitempty"`
	// Vs is the comparison run in the same invocation (--vs ghz, --baseline).
	Vs *Vs `json:"vs,omitempty"`
	// Rounds holds each round's figures when the run alternated rounds.
	Rounds []Round `json:"rounds,omitempty"`
}

// Vs is the other tool's figures and the ratio ours/theirs.
type Vs struct {
	Tool             string  `json:"tool"`
	DurationS        float64 `json:"duration_s"`
	Messages         int64   `json:"messages"`
	MessagesPerSec   float64 `json:"messages_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	LatencyMS        Latency `json:"latency_ms"`
	LatencyOf        string  `json:"latency_of,omitempty"`
	// Ratio is our messages_per_sec over theirs (1.0 = equal).
	Ratio float64 `json:"ratio"`
}

// Round is one round of an alternating comparison.
type Round struct {
	Ours   float64 `json:"messages_per_sec"`
	Theirs float64 `json:"vs_messages_per_sec"`
}

// Latency is a percentile summary in milliseconds: the run summary's
// (result.Latency), so a benchmark and a scenario report the same shape.
type Latency = result.Latency

// NewHistogram returns a histogram of microseconds (1 µs to 1 h, 3
// significant digits), the unit Summarize expects.
func NewHistogram() *hdrhistogram.Histogram { return metrics.NewHistogram() }

// Summarize is the millisecond percentile summary of a µs histogram.
func Summarize(h *hdrhistogram.Histogram) Latency { return metrics.Summary(h) }

// Finish fills the per-second rates from the counts and DurationS.
func (r *Result) Finish() {
	if r.DurationS > 0 {
		r.MessagesPerSec = float64(r.Messages) / r.DurationS
		r.DeliveriesPerSec = float64(r.Deliveries) / r.DurationS
	}
	if r.Vs != nil && r.Vs.MessagesPerSec > 0 {
		r.Vs.Ratio = r.MessagesPerSec / r.Vs.MessagesPerSec
	}
}

// SetVs records other as the comparison run and computes the ratio.
func (r *Result) SetVs(other Result) {
	r.Vs = &Vs{Tool: other.Tool, DurationS: other.DurationS, Messages: other.Messages,
		MessagesPerSec: other.MessagesPerSec, DeliveriesPerSec: other.DeliveriesPerSec,
		LatencyMS: other.LatencyMS, LatencyOf: other.LatencyOf}
	if other.MessagesPerSec > 0 {
		r.Vs.Ratio = r.MessagesPerSec / other.MessagesPerSec
	}
}

// JSON writes results as indented JSON: one object for one result, an
// array for several.
func JSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(rs) == 1 {
		return enc.Encode(rs[0])
	}
	return enc.Encode(rs)
}

// ReadJSON reads the results in a file written by JSON (one object or an
// array). Errors name the file.
func ReadJSON(path string) ([]Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var many []Result
	if err := json.Unmarshal(b, &many); err == nil {
		return many, nil
	}
	var one Result
	if err := json.Unmarshal(b, &one); err != nil {
		return nil, fmt.Errorf("%s: not a bidikit bench JSON result: %w", path, err)
	}
	if one.Workload == "" {
		return nil, fmt.Errorf("%s: not a bidikit bench JSON result: no \"workload\" key", path)
	}
	return []Result{one}, nil
}
