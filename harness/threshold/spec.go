// Package threshold judges a scenario's `thresholds:` block: bounds on one
// role's measured figures (latency percentiles, error counts and rates,
// messages per second, connect time), each a check with evidence: the
// value, the bound, and when the figure first crossed it.
//
// A Spec is what the scenario format parsed (spec.go: metrics, bounds and
// their spellings); New builds its checker (checker.go), which reads the
// same events as the metrics collector and the other checkers, from the
// engine's one dispatcher goroutine.
package threshold

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/metrics"
)

// Op is how a figure must compare with its bound.
type Op int

const (
	// AtMost: figure <= bound (the default for latency, connect time and
	// errors).
	AtMost Op = iota
	// Below: figure < bound.
	Below
	// AtLeast: figure >= bound (the default for per-second rates).
	AtLeast
	// Above: figure > bound.
	Above
)

// String is the operator as written in a scenario file.
func (o Op) String() string {
	return [...]string{"<=", "<", ">=", ">"}[o]
}

// holds reports whether value satisfies o against bound.
func (o Op) holds(value, bound float64) bool {
	switch o {
	case Below:
		return value < bound
	case AtLeast:
		return value >= bound
	case Above:
		return value > bound
	}
	return value <= bound
}

// kind is what a metric measures, which decides its bound's spelling.
type kind int

const (
	latency    kind = iota // a duration; the figure in ms
	rate                   // per second
	errorsKind             // a count, or a share of operations ("1%")
)

// source is the events a metric reads.
type source int

const (
	srcDelivery  source = iota // Deliver/Tick latency: send-to-delivery, game input-to-update
	srcAck                     // Ack latency: send-to-ack
	srcConnect                 // Connect latency: stream setup
	srcSent                    // Send events
	srcDelivered               // Deliver and Tick events
	srcAcked                   // Ack events
	srcErrors                  // Error events and non-OK stream ends
)

// metricDef is one metric key's meaning.
type metricDef struct {
	kind   kind
	src    source
	q      float64 // percentile 0..100 for latency; 100 = max
	what   string  // words for messages: "delivery latency p99"
	sample string  // what one sample is: "deliveries"
}

// metricDefs are the keys a role's thresholds may use.
var metricDefs = func() map[string]metricDef {
	m := map[string]metricDef{
		"sent_per_sec":      {kind: rate, src: srcSent, what: "messages sent per second", sample: "messages sent"},
		"delivered_per_sec": {kind: rate, src: srcDelivered, what: "messages delivered per second", sample: "messages delivered"},
		"acked_per_sec":     {kind: rate, src: srcAcked, what: "acks per second", sample: "acks"},
		"errors":            {kind: errorsKind, src: srcErrors, what: "errors", sample: "operations"},
	}
	pcts := []struct {
		name string
		q    float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}, {"max", 100}}
	for _, p := range pcts {
		m[p.name] = metricDef{kind: latency, src: srcDelivery, q: p.q, what: "delivery latency " + p.name, sample: "deliveries"}
		m["ack_"+p.name] = metricDef{kind: latency, src: srcAck, q: p.q, what: "send-to-ack latency " + p.name, sample: "acks"}
		m["connect_"+p.name] = metricDef{kind: latency, src: srcConnect, q: p.q, what: "connect time " + p.name, sample: "stream opens"}
	}
	return m
}()

// Metrics lists the metric keys a role's thresholds may use, sorted.
func Metrics() []string {
	out := make([]string, 0, len(metricDefs))
	for k := range metricDefs {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// IsMetric reports whether key is a metric key.
func IsMetric(key string) bool { _, ok := metricDefs[key]; return ok }

// IsErrors reports whether key is the errors metric, which also takes a
// mapping of status code names to bounds.
func IsErrors(key string) bool { return key == "errors" }

// Codes lists the status code names an errors mapping may use
// (google.rpc.Code spellings, as in the report's error counts).
func Codes() []string {
	out := make([]string, 0, 17)
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		out = append(out, metrics.CodeName(c))
	}
	return out
}

// IsCode reports whether name is a status code name Codes lists.
func IsCode(name string) bool {
	for _, c := range Codes() {
		if c == name {
			return true
		}
	}
	return false
}

// Spec is one threshold: a role's metric against a bound.
type Spec struct {
	// Role is the role whose clients' figures are judged.
	Role string
	// Metric is a key Metrics lists.
	Metric string
	// Code limits the errors metric to one status code name ("" = every
	// code).
	Code string
	Op   Op
	// Bound is in ms for latency, per second for rates, and for errors a
	// count, or a fraction 0..1 of the role's operations when Share.
	Bound float64
	Share bool
	// Text is the bound as written ("50ms", ">= 5000/s", "1%").
	Text string
	// From and To bound the role's active window, for per-second rates:
	// the role's start and its stop (or the run's duration).
	From, To time.Duration
}

// Name is the threshold's check name, as reports show it:
// "threshold honest p99 <= 50ms", "threshold flooder
// errors[RESOURCE_EXHAUSTED] >= 1".
func (s Spec) Name() string {
	m := s.Metric
	if s.Code != "" {
		m += "[" + s.Code + "]"
	}
	return fmt.Sprintf("threshold %s %s %s %s", s.Role, m, s.Op, s.boundText())
}

// boundText is the bound without its operator, as written.
func (s Spec) boundText() string {
	t := strings.TrimSpace(s.Text)
	for _, p := range []string{"<=", ">=", "<", ">"} {
		if rest, ok := strings.CutPrefix(t, p); ok {
			return strings.TrimSpace(rest)
		}
	}
	return t
}

// ParseBound reads the bound text for metric (a key Metrics lists) into
// spec's Op, Bound, Share and Text. A bound is an optional operator (<=,
// <, >=, >; the default is <= except >= for per-second rates) followed by
// a duration with its unit for latency ("50ms"), a rate for per-second
// metrics ("5000", "5000/s", "300/m"), and for errors a whole count ("0",
// "10") or a share of the role's operations ("1%", "0.5%"). The error says
// what was expected.
func ParseBound(metric, text string, spec *Spec) error {
	def, ok := metricDefs[metric]
	if !ok {
		return fmt.Errorf("unknown metric %q (known: %s)", metric, strings.Join(Metrics(), ", "))
	}
	spec.Metric, spec.Text = metric, strings.TrimSpace(text)
	t := spec.Text
	spec.Op = AtMost
	if def.kind == rate {
		spec.Op = AtLeast
	}
	for _, p := range []struct {
		s  string
		op Op
	}{{"<=", AtMost}, {">=", AtLeast}, {"<", Below}, {">", Above}} {
		if rest, ok := strings.CutPrefix(t, p.s); ok {
			spec.Op, t = p.op, strings.TrimSpace(rest)
			break
		}
	}
	if t == "" {
		return errors.New("has an operator but no bound; write it like \"<= 50ms\"")
	}
	switch def.kind {
	case latency:
		d, err := time.ParseDuration(t)
		if err != nil {
			return fmt.Errorf("%q is not a duration; a latency bound is written like \"50ms\", \"1.5s\" or \"<= 200ms\"", spec.Text)
		}
		if d < 0 {
			return fmt.Errorf("%q: a latency bound must not be negative", spec.Text)
		}
		spec.Bound = float64(d) / float64(time.Millisecond)
	case rate:
		v, err := parsePerSec(t)
		if err != nil {
			return fmt.Errorf("%q %v; a per-second bound is written like \"5000\", \"5000/s\", \"300/m\" or \"<= 100/s\" (a bare bound is a floor)", spec.Text, err)
		}
		spec.Bound = v
	case errorsKind:
		if num, ok := strings.CutSuffix(t, "%"); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
			if err != nil || !(v >= 0 && v <= 100) {
				return fmt.Errorf("%q is not a share between 0%% and 100%%; write it like \"1%%\" or \"0.5%%\"", spec.Text)
			}
			spec.Bound, spec.Share = v/100, true
			return nil
		}
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%q is neither a whole count (0, 10) nor a share of the role's operations (\"1%%\")", spec.Text)
		}
		spec.Bound = float64(n)
	}
	return nil
}

// parsePerSec reads "N", "N/s", "N/m", "N/min", "N/h" or "N/<duration>"
// as a non-negative number per second.
func parsePerSec(t string) (float64, error) {
	num, unit, found := strings.Cut(t, "/")
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, errors.New("is not a number per second")
	}
	if v < 0 {
		return 0, errors.New("must not be negative")
	}
	if !found {
		return v, nil
	}
	var per time.Duration
	switch u := strings.TrimSpace(unit); u {
	case "s", "sec":
		per = time.Second
	case "m", "min":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		d, err := time.ParseDuration(u)
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("has an unknown unit %q", u)
		}
		per = d
	}
	return v / per.Seconds(), nil
}
