package report

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// TextOptions configures the text report.
type TextOptions struct {
	// Color adds ANSI colours to statuses and the final line.
	Color bool
	// Evidence is how many pieces of evidence to show per failed check
	// (default 5).
	Evidence int
}

// Text renders the text report: a verdict table, evidence for failed checks,
// a figures line per scenario and a final line, Summary's verdict (PASSED only
// when every check passed: not measurable fails the run). It colours the
// output only when w is a terminal (an *os.File on a tty) and NO_COLOR is
// unset.
func Text(w io.Writer, run *result.Run) error {
	return TextOptions{Color: isTerminal(w)}.Render(w, run)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return isatty.IsTerminal(f.Fd())
}

const (
	ansiRed    = "\x1b[31m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiBold   = "\x1b[1m"
	ansiReset  = "\x1b[0m"
)

// statusWord is the table's spelling of a verdict status.
func statusWord(s check.Status) string {
	switch s {
	case check.Pass:
		return "PASS"
	case check.Fail:
		return "FAIL"
	case check.NotMeasurable:
		return "NOT MEASURABLE"
	}
	return strings.ToUpper(string(s))
}

// Render writes the text report with these options.
func (o TextOptions) Render(w io.Writer, run *result.Run) error {
	if o.Evidence <= 0 {
		o.Evidence = 5
	}
	paint := func(code, s string) string {
		if !o.Color || code == "" {
			return s
		}
		return code + s + ansiReset
	}
	tw := &textWriter{w: w}

	// Verdict table.
	rows := [][]string{{"SCENARIO", "CHECK", "STATUS", "VIOLATIONS", "SUMMARY"}}
	colors := []string{""}
	for _, s := range run.Scenarios {
		if s.Failure != "" {
			rows = append(rows, []string{s.Name, "(run)", "ERROR", "-", "could not run: " + oneLine(s.Failure)})
			colors = append(colors, ansiRed)
		}
		if s.Interrupted != "" {
			rows = append(rows, []string{s.Name, "(run)", "INTERRUPTED", "-", oneLine(s.Interrupted)})
			colors = append(colors, ansiYellow)
		}
		for _, v := range s.Checks {
			viol := fmt.Sprint(v.Violations)
			c := ansiGreen
			switch v.Status {
			case check.Pass:
			case check.NotMeasurable:
				c = ansiYellow
				viol = "-"
			default:
				c = ansiRed
			}
			rows = append(rows, []string{s.Name, v.Name, statusWord(v.Status), viol, oneLine(v.Summary)})
			colors = append(colors, c)
		}
	}
	widths := make([]int, 4)
	for _, r := range rows {
		for i := range widths {
			widths[i] = max(widths[i], len([]rune(r[i])))
		}
	}
	for i, r := range rows {
		var b strings.Builder
		for j := 0; j < 4; j++ {
			cell := r[j] + strings.Repeat(" ", widths[j]-len([]rune(r[j])))
			if j == 2 {
				cell = paint(colors[i], cell)
			}
			b.WriteString(cell)
			b.WriteString("  ")
		}
		b.WriteString(r[4])
		tw.line(strings.TrimRight(b.String(), " "))
	}

	// Evidence for failed checks.
	for _, s := range run.Scenarios {
		for _, v := range s.Checks {
			if v.Status != check.Fail {
				continue
			}
			n := min(len(v.Evidence), o.Evidence)
			tw.line("")
			tw.line(fmt.Sprintf("%s / %s: %d violation(s), first %d:", s.Name, v.Name, v.Violations, n))
			for _, e := range v.Evidence[:n] {
				tw.line("  " + evidenceLine(e))
			}
		}
	}

	// Figures per scenario.
	tw.line("")
	for _, s := range run.Scenarios {
		tw.line(figuresLine(s))
	}
	tw.line(fmt.Sprintf("seed %d, target %s", run.Seed, orDash(run.Target)))

	// Final line: the same verdict as every other format and the exit status.
	final := ansiBold + ansiRed
	if run.OK() {
		final = ansiBold + ansiGreen
	}
	tw.line(paint(final, Summary(run)))
	return tw.err
}

// textWriter writes lines and keeps the first error.
type textWriter struct {
	w   io.Writer
	err error
}

func (t *textWriter) line(s string) {
	if t.err == nil {
		_, t.err = io.WriteString(t.w, s+"\n")
	}
}

func evidenceLine(e check.Evidence) string {
	var parts []string
	if e.Scope != "" {
		parts = append(parts, "scope="+e.Scope)
	}
	if e.Seq != 0 {
		parts = append(parts, fmt.Sprintf("seq=%d", e.Seq))
	}
	if e.Client != "" {
		parts = append(parts, "client="+e.Client)
	}
	if e.At != 0 {
		parts = append(parts, "at="+fmtAt(e.At))
	}
	parts = append(parts, oneLine(e.Detail))
	return strings.Join(parts, " ")
}

func fmtAt(d time.Duration) string { return d.Round(time.Millisecond).String() }

func figuresLine(s result.Scenario) string {
	if s.Failure != "" {
		return s.Name + ": could not run: " + oneLine(s.Failure)
	}
	if s.Interrupted != "" && s.DurationS == 0 && len(s.Checks) == 0 {
		return s.Name + ": " + oneLine(s.Interrupted)
	}
	line := fmt.Sprintf("%s: %d clients in %.1fs, sent %d, delivered %d, latency p50 %s p99 %s",
		s.Name, s.Clients, s.DurationS, s.Messages.Sent, s.Messages.Delivered,
		fmtMS(s.LatencyMS.P50), fmtMS(s.LatencyMS.P99))
	line += ", errors: " + ErrorsText(s.Errors)
	if s.Interrupted != "" {
		line += " (INTERRUPTED: " + oneLine(s.Interrupted) + ")"
	}
	return line
}

// ErrorsText renders errors by key, sorted: "RESOURCE_EXHAUSTED=3
// UNAVAILABLE=1", or "none".
func ErrorsText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func fmtMS(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
