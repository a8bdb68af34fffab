package check

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// boundFigure is one figure server-bounded samples.
type boundFigure int

const (
	figRSS        boundFigure = iota // process_resident_memory_bytes
	figHeap                          // go_memstats_heap_inuse_bytes
	figGoroutines                    // go_goroutines
	figSockets                       // channelz: open sockets
	figStreams                       // channelz: open streams
	nFigures
)

var (
	figureNames  = [nFigures]string{"rss", "heap", "goroutines", "sockets", "streams"}
	figureMetric = [nFigures]string{"process_resident_memory_bytes", "go_memstats_heap_inuse_bytes", "go_goroutines",
		"channelz sockets", "channelz streams"}
)

// counted reports whether f is a count (rendered as a number, not MiB).
func (f boundFigure) counted() bool { return f == figGoroutines || f == figSockets || f == figStreams }

// fromChannelz reports whether f is read from gRPC channelz, not /metrics.
func (f boundFigure) fromChannelz() bool { return f == figSockets || f == figStreams }

func (f boundFigure) String() string { return figureNames[f] }

// render shows a value of f: MiB for memory, a count for goroutines.
func (f boundFigure) render(v float64) string {
	if f.counted() {
		return fmt.Sprintf("%.0f", v)
	}
	return leakMiB(int64(v))
}

// renderSigned shows a difference of f with its sign.
func (f boundFigure) renderSigned(v float64) string {
	if f.counted() {
		return fmt.Sprintf("%+.0f", v)
	}
	return leakSignedMiB(int64(v))
}

// boundSample is one reading of the server during the run: the figures
// from /metrics and channelz (-1 when missing, errs says why) and its gRPC
// health.
type boundSample struct {
	wall    time.Time
	vals    [nFigures]float64
	errs    [nFigures]string
	healthy bool   // SERVING
	health  string // "" when SERVING, else what was answered or why not
	asked   bool   // health was asked
}

// readBoundSample reads the Prometheus /metrics of the admin endpoint at
// base (with the leaks checker's bounded GET) and, when health is set, the
// target's gRPC health and, when channelz is set (a sockets or streams
// bound), channelz through env: a gRPC call to a server under attack can be
// slow, and the /metrics readings must not wait for it when nothing needs
// it. It blocks for at most one GET of leakHTTPTimeout and one health and
// one channelz call within ctx.
func readBoundSample(ctx context.Context, base string, env Env, health, channelz bool) boundSample {
	s := boundSample{wall: time.Now()}
	for i := range s.vals {
		s.vals[i] = -1
	}
	if base == "" {
		for i := range s.errs {
			s.errs[i] = errNoAdminURL.Error()
		}
	} else {
		body, err := leakGet(ctx, strings.TrimRight(base, "/")+"/metrics")
		for f := range nFigures {
			if f.fromChannelz() {
				continue
			}
			switch {
			case err != nil:
				s.errs[f] = err.Error()
			default:
				if v, ok := promOrPprofValue(body, figureMetric[f]+" "); ok {
					s.vals[f] = v
				} else {
					s.errs[f] = fmt.Sprintf("%s/metrics has no %s", strings.TrimRight(base, "/"), figureMetric[f])
				}
			}
		}
	}
	switch {
	case !channelz:
		s.errs[figSockets], s.errs[figStreams] = "not asked (no channelz bound)", "not asked (no channelz bound)"
	case env != nil:
		cctx, cancel := context.WithTimeout(ctx, leakHTTPTimeout)
		sockets, streams, ok, err := env.Channelz(cctx)
		cancel()
		switch {
		case err != nil:
			s.errs[figSockets], s.errs[figStreams] = "channelz: "+err.Error(), "channelz: "+err.Error()
		case !ok:
			s.errs[figSockets], s.errs[figStreams] = "the target serves no channelz", "the target serves no channelz"
		default:
			s.vals[figSockets], s.vals[figStreams] = float64(sockets), float64(streams)
		}
	default:
		s.errs[figSockets], s.errs[figStreams] = "no target to ask for channelz", "no target to ask for channelz"
	}
	if health && env != nil {
		s.asked = true
		hctx, cancel := context.WithTimeout(ctx, leakHTTPTimeout)
		ok, err := env.Healthy(hctx)
		cancel()
		switch {
		case err != nil:
			s.health = "no health answer: " + err.Error()
		case !ok:
			s.health = "not SERVING"
		default:
			s.healthy = true
		}
	}
	return s
}
