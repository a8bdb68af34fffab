package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// liveMode is how `bidikit run` shows a running scenario.
type liveMode int

const (
	liveNone  liveMode = iota // --quiet
	liveBar                   // a terminal: the mpb bar, redrawn in place
	livePlain                 // anything else (CI logs, pipes): one line per interval
)

// runOne runs one scenario, showing its progress on w as mode says (plain
// lines every interval).
func runOne(ctx context.Context, w io.Writer, s *scenario.Scenario, opts []engine.Option, mode liveMode, interval time.Duration) (result.Scenario, error) {
	switch mode {
	case liveBar:
		return runWithBar(ctx, w, s, opts)
	case livePlain:
		fmt.Fprintf(w, "[%s] start: %d clients for %s (%s)\n", s.Name, s.Clients(), s.Duration, s.File)
		res, err := engine.Run(ctx, s, append(opts, engine.WithProgress(func(p engine.Progress) {
			fmt.Fprintln(w, progressLine(p))
		}, interval))...)
		fmt.Fprintln(w, endLine(res))
		return res, err
	}
	return engine.Run(ctx, s, opts...)
}

// runWithBar runs s under an mpb bar on w (a terminal).
func runWithBar(ctx context.Context, w io.Writer, s *scenario.Scenario, opts []engine.Option) (result.Scenario, error) {
	p := mpb.New(mpb.WithOutput(w), mpb.WithWidth(30))
	total := s.Duration.Milliseconds()
	var mu sync.Mutex
	var last engine.Progress
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(s.Name, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			mu.Lock()
			defer mu.Unlock()
			line := fmt.Sprintf("%d/%d connected  %.0f msg/s  p99 %s  %d errors", last.Connected, last.Clients, last.MessagesPerSec, fmtP99(last.P99), last.Errors)
			if len(last.Violated) > 0 {
				line += "  violated: " + violatedText(last.Violated)
			}
			if last.Phase != engine.PhaseRunning && last.Phase != "" {
				line += "  (" + string(last.Phase) + ")"
			}
			return line
		})))
	res, err := engine.Run(ctx, s, append(opts, engine.WithProgress(func(pr engine.Progress) {
		mu.Lock()
		last = pr
		mu.Unlock()
		bar.SetCurrent(min(pr.Elapsed.Milliseconds(), total))
	}, 0))...)
	if err != nil || res.Interrupted != "" {
		bar.Abort(false)
	} else {
		bar.SetCurrent(total)
	}
	p.Wait()
	return res, err
}

// progressLine is one plain progress line:
//
//	[chat-rooms] running 5.0s/10s  clients 40/40  sent 80/s  delivered 640/s  p99 3.10ms  errors none  violated none
//	[chat-rooms] VIOLATION at 4.2s: no-gaps (3 so far, first at 4.2s)
func progressLine(p engine.Progress) string {
	if p.NewViolation {
		return fmt.Sprintf("[%s] VIOLATION at %s: %s", p.Scenario, fmtSecs(p.Elapsed), violatedText(p.Violated))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%s] %s %s/%s  clients %d/%d  sent %.0f/s  delivered %.0f/s  p99 %s  errors %s  violated %s",
		p.Scenario, p.Phase, fmtSecs(p.Elapsed), p.Duration, p.Connected, p.Clients,
		p.MessagesPerSec, p.DeliveredPerSec, fmtP99(p.P99), report.ErrorsText(p.ErrorsByCode), violatedText(p.Violated))
	return b.String()
}

// endLine is the plain line a scenario ends with: its verdict in the
// reports' words. A scenario that could not run says only that: the reason
// is the report's (and, when it ends the run, bidikit's last line).
func endLine(res result.Scenario) string {
	if res.Failure != "" {
		return fmt.Sprintf("[%s] could not run", res.Name)
	}
	return fmt.Sprintf("[%s] done in %s: %s", res.Name, fmtSecs(time.Duration(res.DurationS*float64(time.Second))), report.ScenarioSummary(res))
}

// violatedText lists live violations: "no-gaps (3, first at 4.2s), ...".
func violatedText(vs []engine.Violation) string {
	if len(vs) == 0 {
		return "none"
	}
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprintf("%s (%d, first at %s)", v.Check, v.Violations, fmtSecs(v.At))
	}
	return strings.Join(parts, ", ")
}

func fmtSecs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

func fmtP99(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(10 * time.Microsecond).String()
}
