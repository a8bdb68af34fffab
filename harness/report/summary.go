package report

import (
	"fmt"
	"strings"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// maxListed bounds the not-measurable checks and unrunnable scenarios a
// summary names one by one; the rest are counted ("and 3 more").
const maxListed = 5

// Summary is the run's verdict in one line, the same words in every format
// (the text report's last line, the JSON "summary", the HTML heading, the
// JUnit suites' output), for example
//
//	PASSED: 5 of 5 checks passed
//	FAILED: 2 of 5 checks failed, 1 not measurable: leaks (no goroutine figures: give --admin-url)
//	FAILED: 1 of 4 checks not measurable: leaks (...); 1 of 2 scenarios could not run: game (dial ...)
//
// The verdict word follows result.Run.OK: a not-measurable check or a
// scenario that could not run fails the run, as it does the exit status.
// An interrupted run (a signal) or scenario (a signal, --fail-fast) says
// INTERRUPTED first, with why, then what its checks found on what was seen:
//
//	INTERRUPTED: interrupted (interrupt signal received); 3 of 3 checks passed on what was seen; 1 of 2 scenarios not run
//
// Checks are named by scenario/check when the run has several scenarios.
func Summary(run *result.Run) string {
	c := run.Counts()
	if run.OK() {
		return fmt.Sprintf("PASSED: %d of %d checks passed", c.Passed, c.Checks)
	}
	if run.Interrupted != "" || c.Interrupted > 0 {
		return interruptedSummary(run, c)
	}
	var na, broken, unexplained []string
	for _, s := range run.Scenarios {
		prefix := ""
		if len(run.Scenarios) > 1 {
			prefix = s.Name + "/"
		}
		for _, v := range s.Checks {
			if v.Status == check.NotMeasurable {
				na = append(na, fmt.Sprintf("%s%s (%s)", prefix, v.Name, reason(v.Summary)))
			}
		}
		if s.Failure != "" {
			broken = append(broken, fmt.Sprintf("%s (%s)", s.Name, oneLine(s.Failure)))
		} else if sc := s.Counts(); !s.Passed && sc.Passed == sc.Checks {
			unexplained = append(unexplained, s.Name)
		}
	}
	parts := checkParts(c.Counts, na)
	if len(broken) > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d scenarios could not run: %s", len(broken), c.Scenarios, list(broken)))
	}
	if len(unexplained) > 0 {
		parts = append(parts, fmt.Sprintf("not passed without a failed check: %s", list(unexplained)))
	}
	if len(parts) == 0 {
		parts = append(parts, "the run was marked failed")
	}
	return "FAILED: " + strings.Join(parts, "; ")
}

// ScenarioSummary is one scenario's verdict in the words of Summary:
// "PASSED: 2 of 2 checks passed", "FAILED: 1 of 3 checks failed, 1 not
// measurable: leaks (...)", "FAILED: could not run: dial ...",
// "INTERRUPTED: fail-fast: check no-gaps found its first violation at
// 3.2s of 30s; 1 of 3 checks failed".
func ScenarioSummary(s result.Scenario) string {
	c := s.Counts()
	if s.OK() {
		return fmt.Sprintf("PASSED: %d of %d checks passed", c.Passed, c.Checks)
	}
	if s.Interrupted != "" {
		parts := []string{oneLine(s.Interrupted)}
		if s.Failure != "" {
			parts = append(parts, "could not run: "+oneLine(s.Failure))
		}
		if c.Checks > 0 {
			parts = append(parts, judgedParts(c, naList(s.Checks, ""))...)
		}
		return "INTERRUPTED: " + strings.Join(parts, "; ")
	}
	var na []string
	for _, v := range s.Checks {
		if v.Status == check.NotMeasurable {
			na = append(na, fmt.Sprintf("%s (%s)", v.Name, reason(v.Summary)))
		}
	}
	var parts []string
	if s.Failure != "" {
		parts = append(parts, "could not run: "+oneLine(s.Failure))
	}
	parts = append(parts, checkParts(c, na)...)
	if len(parts) == 0 {
		parts = append(parts, "not passed without a failed check")
	}
	return "FAILED: " + strings.Join(parts, "; ")
}

// interruptedSummary is Summary for a run that was interrupted or has an
// interrupted scenario.
func interruptedSummary(run *result.Run, c result.RunCounts) string {
	var parts, na, stopped []string
	if run.Interrupted != "" {
		parts = append(parts, oneLine(run.Interrupted))
	}
	notRun := 0
	for _, s := range run.Scenarios {
		prefix := ""
		if len(run.Scenarios) > 1 {
			prefix = s.Name + "/"
		}
		na = append(na, naList(s.Checks, prefix)...)
		switch {
		case s.Interrupted != "" && len(s.Checks) == 0 && s.DurationS == 0:
			notRun++
		case s.Interrupted != "" && run.Interrupted == "":
			stopped = append(stopped, fmt.Sprintf("%s (%s)", s.Name, oneLine(s.Interrupted)))
		}
	}
	if len(stopped) > 0 {
		parts = append(parts, "stopped early: "+list(stopped))
	}
	parts = append(parts, judgedParts(c.Counts, na)...)
	if notRun > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d scenarios not run", notRun, c.Scenarios))
	}
	if n := c.CouldNotRun; n > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d scenarios could not run", n, c.Scenarios))
	}
	return "INTERRUPTED: " + strings.Join(parts, "; ")
}

// judgedParts is checkParts for an interrupted run, which says so when no
// check failed: "3 of 3 checks passed on what was seen".
func judgedParts(c result.Counts, na []string) []string {
	if p := checkParts(c, na); len(p) > 0 {
		return p
	}
	return []string{fmt.Sprintf("%d of %d checks passed on what was seen", c.Passed, c.Checks)}
}

// naList names the not-measurable checks with their reasons.
func naList(vs []check.Verdict, prefix string) []string {
	var na []string
	for _, v := range vs {
		if v.Status == check.NotMeasurable {
			na = append(na, fmt.Sprintf("%s%s (%s)", prefix, v.Name, reason(v.Summary)))
		}
	}
	return na
}

// checkParts says how many checks failed and which were not measurable;
// nothing when neither happened.
func checkParts(c result.Counts, na []string) []string {
	switch {
	case c.Failed > 0 && c.NotMeasurable > 0:
		return []string{fmt.Sprintf("%d of %d checks failed, %d not measurable: %s", c.Failed, c.Checks, c.NotMeasurable, list(na))}
	case c.Failed > 0:
		return []string{fmt.Sprintf("%d of %d checks failed", c.Failed, c.Checks)}
	case c.NotMeasurable > 0:
		return []string{fmt.Sprintf("%d of %d checks not measurable: %s", c.NotMeasurable, c.Checks, list(na))}
	}
	return nil
}

// list joins items, naming at most maxListed of them.
func list(items []string) string {
	if len(items) <= maxListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxListed], ", ") + fmt.Sprintf(" and %d more", len(items)-maxListed)
}

// reason is a not-measurable verdict's summary on one line, or a stand-in
// when the checker gave none.
func reason(summary string) string {
	if s := oneLine(summary); s != "" {
		return s
	}
	return "no reason given"
}
