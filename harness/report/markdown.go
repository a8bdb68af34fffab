package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// MarkdownOptions bounds the markdown report. GitHub cuts a job summary at
// 1 MiB and a PR comment at 64 KiB, so everything that grows with the run is
// bounded and what is left out is counted.
type MarkdownOptions struct {
	// Evidence is how many pieces of evidence to show per failed or
	// not-measurable check (default 5).
	Evidence int
	// Problems is how many failed or not-measurable checks get an evidence
	// section (default 20).
	Problems int
	// Rows bounds the checks table (default 200 rows).
	Rows int
	// Cell bounds one table cell or evidence line, in characters (default
	// 300).
	Cell int
}

// Markdown renders the run as GitHub-flavoured markdown for CI job summaries
// ($GITHUB_STEP_SUMMARY) and pull-request comments: a heading with Summary's
// verdict, a table of scenarios with their figures, a table of checks, the
// thresholds with what was measured, and for each failed or not-measurable
// check its summary and first pieces of evidence. Every part is bounded (see
// MarkdownOptions); table cells are escaped so that a summary holding "|",
// "<" or a newline cannot break the table.
func Markdown(w io.Writer, run *result.Run) error {
	return MarkdownOptions{}.Render(w, run)
}

// markdown status words, with a sign readers can scan for.
func mdStatus(s check.Status) string {
	switch s {
	case check.Pass:
		return "✅ pass"
	case check.NotMeasurable:
		return "⚠️ not measurable"
	case check.Fail:
		return "❌ FAIL"
	}
	return "❌ " + strings.ToUpper(string(s))
}

// mdScenarioStatus is one scenario's verdict word.
func mdScenarioStatus(s result.Scenario) string {
	switch {
	case s.OK():
		return "✅ passed"
	case s.Failure != "" && len(s.Checks) == 0:
		return "❌ could not run"
	case s.Interrupted != "":
		return "⏹️ interrupted"
	}
	return "❌ failed"
}

// Render writes the markdown report with these bounds.
func (o MarkdownOptions) Render(w io.Writer, run *result.Run) error {
	if o.Evidence <= 0 {
		o.Evidence = 5
	}
	if o.Problems <= 0 {
		o.Problems = 20
	}
	if o.Rows <= 0 {
		o.Rows = 200
	}
	if o.Cell <= 0 {
		o.Cell = 300
	}
	md := &mdWriter{o: o, tw: &textWriter{w: w}}
	md.header(run)
	md.scenarios(run)
	problems := md.checks(run)
	md.problems(problems)
	return md.tw.err
}

// mdWriter writes one markdown report (Render's parts).
type mdWriter struct {
	o  MarkdownOptions
	tw *textWriter
}

// cell is s as one bounded, escaped table cell.
func (m *mdWriter) cell(s string) string { return mdCell(s, m.o.Cell) }

// header writes the verdict line, the run's seed, target and start, and
// whether it was interrupted.
func (m *mdWriter) header(run *result.Run) {
	tw, cell := m.tw, m.cell

	sign := "❌"
	if run.OK() {
		sign = "✅"
	} else if run.Interrupted != "" {
		sign = "⏹️"
	}
	tw.line("## " + sign + " bidikit: " + cell(Summary(run)))
	tw.line("")
	meta := []string{fmt.Sprintf("seed %d", run.Seed), "target `" + mdCode(orDash(run.Target)) + "`"}
	if !run.StartedAt.IsZero() {
		meta = append(meta, "started "+run.StartedAt.UTC().Format("2006-01-02 15:04:05 UTC"))
	}
	tw.line(strings.Join(meta, " · "))
	if run.Interrupted != "" {
		tw.line("")
		tw.line("> **Interrupted:** " + cell(run.Interrupted) + ". The checks judged only what was seen until then.")
	}
}

// scenarios writes the table of scenarios.
func (m *mdWriter) scenarios(run *result.Run) {
	tw, cell := m.tw, m.cell
	// Scenarios.
	tw.line("")
	tw.line("### Scenarios")
	tw.line("")
	tw.line("| scenario | verdict | checks | clients | duration | sent | delivered | p50 | p99 | errors |")
	tw.line("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, s := range run.Scenarios {
		c := s.Counts()
		verdict := mdScenarioStatus(s)
		if s.Failure != "" {
			verdict += ": " + cell(s.Failure)
		} else if s.Interrupted != "" {
			verdict += ": " + cell(s.Interrupted)
		}
		if s.Failure != "" && len(s.Checks) == 0 {
			tw.line(fmt.Sprintf("| %s | %s | - | - | - | - | - | - | - | - |", cell(s.Name), verdict))
			continue
		}
		tw.line(fmt.Sprintf("| %s | %s | %d/%d | %d | %.1f s | %d | %d | %s | %s | %s |",
			cell(s.Name), verdict, c.Passed, c.Checks, s.Clients, s.DurationS, s.Messages.Sent, s.Messages.Delivered,
			fmtMS(s.LatencyMS.P50), fmtMS(s.LatencyMS.P99), cell(ErrorsText(s.Errors))))
	}
}

// checks writes the checks' and the thresholds' tables and returns the
// checks that did not pass.
func (m *mdWriter) checks(run *result.Run) []mdCheck {
	tw, cell, o := m.tw, m.cell, m.o
	// Checks (thresholds get their own table below).
	var rows, thresholds, problems []mdCheck
	for _, s := range run.Scenarios {
		for _, v := range s.Checks {
			c := mdCheck{scenario: s.Name, v: v}
			if strings.HasPrefix(v.Name, "threshold ") {
				thresholds = append(thresholds, c)
			} else {
				rows = append(rows, c)
			}
			if v.Status != check.Pass {
				problems = append(problems, c)
			}
		}
	}
	if len(rows) > 0 {
		tw.line("")
		tw.line("### Checks")
		tw.line("")
		tw.line("| scenario | check | status | violations | summary |")
		tw.line("| --- | --- | --- | ---: | --- |")
		for i, c := range rows {
			if i == o.Rows {
				tw.line(fmt.Sprintf("| … | %d more checks: see the JSON or JUnit report | | | |", len(rows)-o.Rows))
				break
			}
			tw.line(fmt.Sprintf("| %s | %s | %s | %s | %s |", cell(c.scenario), cell(c.v.Name), mdStatus(c.v.Status), violations(c.v), cell(c.v.Summary)))
		}
	}
	if len(thresholds) > 0 {
		tw.line("")
		tw.line("### Thresholds")
		tw.line("")
		tw.line("| scenario | threshold | status | measured |")
		tw.line("| --- | --- | --- | --- |")
		for i, c := range thresholds {
			if i == o.Rows {
				tw.line(fmt.Sprintf("| … | %d more thresholds: see the JSON or JUnit report | | |", len(thresholds)-o.Rows))
				break
			}
			tw.line(fmt.Sprintf("| %s | `%s` | %s | %s |", cell(c.scenario), mdCode(strings.TrimPrefix(c.v.Name, "threshold ")), mdStatus(c.v.Status), cell(c.v.Summary)))
		}
	}
	return problems
}

// problems writes the evidence of the checks that did not pass (bounded).
func (m *mdWriter) problems(problems []mdCheck) {
	tw, cell, o := m.tw, m.cell, m.o
	// Evidence of what did not pass.
	if len(problems) > 0 {
		tw.line("")
		tw.line("### What did not pass")
		for i, c := range problems {
			if i == o.Problems {
				tw.line("")
				tw.line(fmt.Sprintf("… and %d more checks that did not pass: see the JSON or JUnit report.", len(problems)-o.Problems))
				break
			}
			tw.line("")
			head := fmt.Sprintf("**%s / %s** — %s", cell(c.scenario), cell(c.v.Name), mdStatus(c.v.Status))
			if c.v.Status == check.NotMeasurable {
				head += ": " + cell(reason(c.v.Summary)) + " (a check that could not look is never a pass)"
			} else {
				head += fmt.Sprintf(", %d violation(s): %s", c.v.Violations, cell(c.v.Summary))
			}
			tw.line(head)
			n := min(len(c.v.Evidence), o.Evidence)
			if n > 0 {
				tw.line("")
			}
			for _, e := range c.v.Evidence[:n] {
				tw.line("- " + cell(evidenceLine(e)))
			}
			if more := max(c.v.Violations, len(c.v.Evidence)) - n; more > 0 && n > 0 {
				tw.line(fmt.Sprintf("- … and %d more", more))
			}
		}
	}
}

// mdCheck is one verdict with its scenario's name.
type mdCheck struct {
	scenario string
	v        check.Verdict
}

// violations is the verdict's count, or "-" when it was not measured.
func violations(v check.Verdict) string {
	if v.Status == check.NotMeasurable {
		return "-"
	}
	return fmt.Sprint(v.Violations)
}

// mdCell puts s on one line, cut to limit characters, with the characters
// that would end a table cell or open HTML escaped.
func mdCell(s string, limit int) string {
	s = oneLine(s)
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit]) + "…"
	}
	return strings.NewReplacer("\\", "\\\\", "|", "\\|", "<", "&lt;", ">", "&gt;", "`", "\\`").Replace(s)
}

// mdCode makes s safe inside a `code span` in a table: no backtick, no
// pipe (GitHub splits cells on a pipe even inside code).
func mdCode(s string) string {
	return strings.NewReplacer("`", "'", "|", "\\|").Replace(oneLine(s))
}
