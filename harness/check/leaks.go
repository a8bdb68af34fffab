package check

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/bidikit/bidikit/harness/event"
)

// leaks is the "leaks" checker: it takes a baseline of the server's
// goroutines, live heap and channelz open sockets and streams before any
// client connects, and after the run waits up to settle for each to come
// back within its threshold of the baseline. Sources: the admin endpoint's
// /debug/pprof/goroutine and /debug/pprof/heap?gc=1 (or /metrics), and
// gRPC channelz. A server exposing none of them is "not measurable".
type leaks struct {
	p        LeakParams
	base     sample
	haveBase bool
	started  bool
	v        Verdict
}

// LeakParams are the leaks checker's thresholds.
type LeakParams struct {
	Settle                    time.Duration `yaml:"settle"`
	GoroutinesOverBaselineMax int           `yaml:"goroutines_over_baseline_max"`
	HeapOverBaselineMaxBytes  int64         `yaml:"heap_over_baseline_max_bytes"`
	SocketsOverBaselineMax    int           `yaml:"sockets_over_baseline_max"`
	StreamsOverBaselineMax    int           `yaml:"streams_over_baseline_max"`
}

// sample is one reading; -1 means not available.
type sample struct {
	goroutines int
	heap       int64
	sockets    int
	streams    int
}

// Sample is one reading of a server's resources; -1 means not available.
type Sample struct {
	Goroutines int
	HeapBytes  int64
	Sockets    int
	Streams    int
}

// Measure reads a server's goroutines and live heap (after a GC) through
// its admin endpoint, and open sockets and streams through env's channelz
// when env is not nil. It is what the leaks checker reads.
func Measure(ctx context.Context, adminURL string, env Env) Sample {
	s := readSample(ctx, adminEnv{url: adminURL, env: env})
	return Sample{Goroutines: s.goroutines, HeapBytes: s.heap, Sockets: s.sockets, Streams: s.streams}
}

// adminEnv overrides an Env's admin URL (env may be nil).
type adminEnv struct {
	url string
	env Env
}

func (a adminEnv) AdminURL() string { return a.url }
func (a adminEnv) Channelz(ctx context.Context) (int, int, bool, error) {
	if a.env == nil {
		return 0, 0, false, nil
	}
	return a.env.Channelz(ctx)
}
func (a adminEnv) Healthy(ctx context.Context) (bool, error) {
	if a.env == nil {
		return false, nil
	}
	return a.env.Healthy(ctx)
}

func init() {
	Register("leaks", func(decode func(any) error) (Checker, error) {
		p := LeakParams{Settle: 15 * time.Second, GoroutinesOverBaselineMax: 20,
			HeapOverBaselineMaxBytes: 32 << 20, SocketsOverBaselineMax: 2, StreamsOverBaselineMax: 2}
		if err := decode(&p); err != nil {
			return nil, err
		}
		if p.Settle <= 0 || p.Settle > 10*time.Minute {
			return nil, fmt.Errorf("leaks: settle must be within (0, 10m], got %s", p.Settle)
		}
		if p.GoroutinesOverBaselineMax < 0 || p.HeapOverBaselineMaxBytes < 0 || p.SocketsOverBaselineMax < 0 || p.StreamsOverBaselineMax < 0 {
			return nil, fmt.Errorf("leaks: thresholds must not be negative")
		}
		return &leaks{p: p, v: Verdict{Name: "leaks"}}, nil
	})
}

func (l *leaks) Observe(*event.Event) {}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// readSample reads what the target exposes.
func readSample(ctx context.Context, env Env) sample {
	s := sample{goroutines: -1, heap: -1, sockets: -1, streams: -1}
	if base := strings.TrimRight(env.AdminURL(), "/"); base != "" {
		if body, err := get(ctx, base+"/debug/pprof/goroutine?debug=1"); err == nil {
			// First line: "goroutine profile: total N".
			if line, _, _ := strings.Cut(body, "\n"); strings.HasPrefix(line, "goroutine profile: total ") {
				if n, err := strconv.Atoi(strings.TrimPrefix(line, "goroutine profile: total ")); err == nil {
					s.goroutines = n
				}
			}
		}
		// gc=1 collects garbage first, so HeapInuse is live heap.
		if body, err := get(ctx, base+"/debug/pprof/heap?gc=1&debug=1"); err == nil {
			sc := bufio.NewScanner(strings.NewReader(body))
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "# HeapInuse = "); ok {
					if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
						s.heap = n
					}
				}
			}
		}
		if s.goroutines < 0 {
			if body, err := get(ctx, base+"/metrics"); err == nil {
				for _, line := range strings.Split(body, "\n") {
					if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
						if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
							s.goroutines = int(f)
						}
					}
				}
			}
		}
	}
	if so, st, ok, err := env.Channelz(ctx); ok && err == nil {
		s.sockets, s.streams = so, st
	}
	return s
}

func (s sample) measurable() bool {
	return s.goroutines >= 0 || s.heap >= 0 || s.sockets >= 0 || s.streams >= 0
}

func (l *leaks) Start(ctx context.Context, env Env) error {
	l.started = true
	if env == nil {
		return nil
	}
	l.base = readSample(ctx, env)
	l.haveBase = l.base.measurable()
	return nil
}

// excess lists what is still above the baseline's thresholds in s.
func (l *leaks) excess(s sample) []string {
	var out []string
	if l.base.goroutines >= 0 && s.goroutines >= 0 && s.goroutines-l.base.goroutines > l.p.GoroutinesOverBaselineMax {
		out = append(out, fmt.Sprintf("goroutines %d vs baseline %d (+%d, max +%d)", s.goroutines, l.base.goroutines, s.goroutines-l.base.goroutines, l.p.GoroutinesOverBaselineMax))
	}
	if l.base.heap >= 0 && s.heap >= 0 && s.heap-l.base.heap > l.p.HeapOverBaselineMaxBytes {
		out = append(out, fmt.Sprintf("live heap %d bytes vs baseline %d (+%d, max +%d)", s.heap, l.base.heap, s.heap-l.base.heap, l.p.HeapOverBaselineMaxBytes))
	}
	if l.base.sockets >= 0 && s.sockets >= 0 && s.sockets-l.base.sockets > l.p.SocketsOverBaselineMax {
		out = append(out, fmt.Sprintf("open sockets %d vs baseline %d (max +%d)", s.sockets, l.base.sockets, l.p.SocketsOverBaselineMax))
	}
	if l.base.streams >= 0 && s.streams >= 0 && s.streams-l.base.streams > l.p.StreamsOverBaselineMax {
		out = append(out, fmt.Sprintf("open streams %d vs baseline %d (max +%d)", s.streams, l.base.streams, l.p.StreamsOverBaselineMax))
	}
	return out
}

func (l *leaks) Verdict(ctx context.Context, env Env) Verdict {
	if env == nil || !l.started || !l.haveBase {
		l.v.Status = NotMeasurable
		l.v.Summary = "the target exposes no goroutine, heap or channelz figures (give --admin-url, serve channelz)"
		return l.v
	}
	deadline := time.Now().Add(l.p.Settle)
	var last sample
	var over []string
	for attempt := 0; attempt < 1000; attempt++ {
		last = readSample(ctx, env)
		over = l.excess(last)
		if len(over) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	for _, o := range over {
		l.v.Add(Evidence{Detail: fmt.Sprintf("after %s: %s", l.p.Settle, o)})
	}
	summarise(&l.v, "back to baseline: "+describeSample(last, l.base),
		"%d resources still above baseline after %s", l.v.Violations, l.p.Settle)
	return l.v
}

// describeSample names the measured figures of s (with base's) and what
// could not be measured, e.g. "sockets 3, streams 3 (goroutines and heap
// not measured: give --admin-url)".
func describeSample(s, base sample) string {
	var got, missing []string
	pair := func(name string, v, b int64) {
		if v < 0 || b < 0 {
			missing = append(missing, name)
			return
		}
		got = append(got, fmt.Sprintf("%s %d (baseline %d)", name, v, b))
	}
	pair("goroutines", int64(s.goroutines), int64(base.goroutines))
	if s.heap < 0 || base.heap < 0 {
		missing = append(missing, "heap")
	} else {
		got = append(got, fmt.Sprintf("heap %.1f MiB (baseline %.1f MiB)", float64(s.heap)/(1<<20), float64(base.heap)/(1<<20)))
	}
	pair("sockets", int64(s.sockets), int64(base.sockets))
	pair("streams", int64(s.streams), int64(base.streams))
	out := strings.Join(got, ", ")
	if len(missing) > 0 {
		out += fmt.Sprintf(" (%s not measured: the target gives no --admin-url metrics or channelz for them)", strings.Join(missing, ", "))
	}
	return out
}
