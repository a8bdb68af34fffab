package report

import (
	"encoding/json"
	"io"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// The JSON report's stable shape (documented in docs/scenarios.md). It
// mirrors result.Run but never emits null for a list or map, and adds
// checks[].passed and, per run and per scenario, "summary" (Summary's line)
// and "counts" (checks passed, failed and not measurable). "passed" is
// result.Run.OK / result.Scenario.OK: false when any check was not
// measurable or a scenario could not run.
type (
	jsonRun struct {
		Passed    bool             `json:"passed"`
		Summary   string           `json:"summary"`
		Counts    result.RunCounts `json:"counts"`
		Seed      int64            `json:"seed"`
		Target    string           `json:"target"`
		StartedAt string           `json:"started_at"`
		Scenarios []jsonScenario   `json:"scenarios"`
		// Interrupted is result.Run.Interrupted (omitted when empty).
		Interrupted string `json:"interrupted,omitempty"`
	}
	jsonScenario struct {
		Name    string        `json:"name"`
		File    string        `json:"file"`
		Service string        `json:"service"`
		Seed    int64         `json:"seed"`
		Passed  bool          `json:"passed"`
		Summary string        `json:"summary"`
		Counts  result.Counts `json:"counts"`
		Failure string        `json:"failure,omitempty"`
		// Interrupted is result.Scenario.Interrupted (omitted when empty).
		Interrupted string          `json:"interrupted,omitempty"`
		DurationS   float64         `json:"duration_s"`
		Clients     int             `json:"clients"`
		Messages    result.Messages `json:"messages"`
		LatencyMS   result.Latency  `json:"latency_ms"`
		Errors      map[string]int  `json:"errors"`
		Checks      []jsonVerdict   `json:"checks"`
		Roles       []jsonRole      `json:"roles"`
		Timeline    []result.Point  `json:"timeline"`
		// Markers are result.Scenario.Markers ([] when none).
		Markers []result.Marker `json:"markers"`
	}
	jsonVerdict struct {
		Name       string           `json:"name"`
		Status     check.Status     `json:"status"`
		Passed     bool             `json:"passed"`
		Violations int              `json:"violations"`
		Summary    string           `json:"summary"`
		Evidence   []check.Evidence `json:"evidence"`
	}
	jsonRole struct {
		result.Role
		Distribution []result.Bucket `json:"distribution"`
		// Timeline is result.Role.Timeline ([] when none).
		Timeline []result.Point `json:"timeline"`
	}
)

// JSON renders the run as one indented JSON document (2 spaces).
func JSON(w io.Writer, run *result.Run) error {
	out := jsonRun{
		Passed: run.OK(), Summary: Summary(run), Counts: run.Counts(),
		Seed: run.Seed, Target: run.Target,
		StartedAt:   run.StartedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		Scenarios:   make([]jsonScenario, 0, len(run.Scenarios)),
		Interrupted: run.Interrupted,
	}
	for _, s := range run.Scenarios {
		js := jsonScenario{
			Name: s.Name, File: s.File, Service: s.Service, Seed: s.Seed,
			Passed: s.OK(), Summary: ScenarioSummary(s), Counts: s.Counts(),
			Failure: s.Failure, Interrupted: s.Interrupted, DurationS: s.DurationS, Clients: s.Clients,
			Messages: s.Messages, LatencyMS: s.LatencyMS,
			Errors:   s.Errors,
			Checks:   make([]jsonVerdict, 0, len(s.Checks)),
			Roles:    make([]jsonRole, 0, len(s.Roles)),
			Timeline: s.Timeline,
			Markers:  s.Markers,
		}
		if js.Errors == nil {
			js.Errors = map[string]int{}
		}
		if js.Timeline == nil {
			js.Timeline = []result.Point{}
		}
		if js.Markers == nil {
			js.Markers = []result.Marker{}
		}
		for _, v := range s.Checks {
			ev := v.Evidence
			if ev == nil {
				ev = []check.Evidence{}
			}
			js.Checks = append(js.Checks, jsonVerdict{Name: v.Name, Status: v.Status, Passed: v.Passed(),
				Violations: v.Violations, Summary: v.Summary, Evidence: ev})
		}
		for _, r := range s.Roles {
			d := r.Distribution
			if d == nil {
				d = []result.Bucket{}
			}
			tl := r.Timeline
			if tl == nil {
				tl = []result.Point{}
			}
			js.Roles = append(js.Roles, jsonRole{Role: r, Distribution: d, Timeline: tl})
		}
		out.Scenarios = append(out.Scenarios, js)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
