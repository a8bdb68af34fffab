package report

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// JUnit XML in the shape Jenkins' junit plugin (and GitLab, GitHub
// reporters) accept: one <testsuite> per scenario, one <testcase> per check
// (classname = scenario, name = check). A failed check is a <failure> with
// its evidence; a scenario that could not run is one "run" test case with an
// <error type="could-not-run">.
//
// A not-measurable check is a <failure type="not-measurable"> whose message
// is the reason. Not <skipped>: every CI reporter shows a skipped test as
// neutral (grey, not counted against the build), which would pass a check
// that never looked. Not <error> either: <failure> is what every reporter
// counts and shows as a failed test (Jenkins' junit plugin, GitLab's test
// report, the GitHub JUnit report actions), while <error> means the test
// itself broke, is tallied apart by several of them, and is kept here for a
// scenario that could not run. The type attribute tells it from a real
// violation (type="fail") for whoever reads the XML. Each suite's
// <system-out> starts with ScenarioSummary's line.
//
// An interrupted scenario (a signal, --fail-fast) gets one more test case,
// "interrupted", an <error type="interrupted"> saying why, and an
// "interrupted" property; its checks are the verdicts on what was seen.
// An interrupted run has an "interrupted" attribute on <testsuites>.
type (
	junitSuites struct {
		XMLName     xml.Name     `xml:"testsuites"`
		Name        string       `xml:"name,attr"`
		Interrupted string       `xml:"interrupted,attr,omitempty"`
		Tests       int          `xml:"tests,attr"`
		Failures    int          `xml:"failures,attr"`
		Errors      int          `xml:"errors,attr"`
		Skipped     int          `xml:"skipped,attr"`
		Time        string       `xml:"time,attr"`
		Suites      []junitSuite `xml:"testsuite"`
	}
	junitSuite struct {
		Name       string          `xml:"name,attr"`
		Tests      int             `xml:"tests,attr"`
		Failures   int             `xml:"failures,attr"`
		Errors     int             `xml:"errors,attr"`
		Skipped    int             `xml:"skipped,attr"`
		Time       string          `xml:"time,attr"`
		Timestamp  string          `xml:"timestamp,attr,omitempty"`
		Properties []junitProperty `xml:"properties>property"`
		Cases      []junitCase     `xml:"testcase"`
		SystemOut  *junitText      `xml:"system-out"`
	}
	junitProperty struct {
		Name  string `xml:"name,attr"`
		Value string `xml:"value,attr"`
	}
	junitCase struct {
		Classname string        `xml:"classname,attr"`
		Name      string        `xml:"name,attr"`
		Time      string        `xml:"time,attr"`
		Failure   *junitMessage `xml:"failure"`
		Error     *junitMessage `xml:"error"`
		Skipped   *junitMessage `xml:"skipped"`
	}
	junitText struct {
		Body string `xml:",cdata"`
	}
	junitMessage struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr,omitempty"`
		Body    string `xml:",cdata"`
	}
)

// JUnit renders the run as JUnit XML.
func JUnit(w io.Writer, run *result.Run) error {
	out := junitSuites{Name: "bidikit", Interrupted: run.Interrupted}
	var total float64
	for _, s := range run.Scenarios {
		su := junitSuite{
			Name: s.Name,
			Time: fmt.Sprintf("%.3f", s.DurationS),
			Properties: []junitProperty{
				{"seed", fmt.Sprint(s.Seed)},
				{"run.seed", fmt.Sprint(run.Seed)},
				{"target", run.Target},
				{"file", s.File},
				{"service", s.Service},
				{"clients", fmt.Sprint(s.Clients)},
			},
			SystemOut: &junitText{ScenarioSummary(s) + "\n" + figuresLine(s) + "\n"},
		}
		if !run.StartedAt.IsZero() {
			su.Timestamp = run.StartedAt.UTC().Format("2006-01-02T15:04:05")
		}
		if s.Failure != "" {
			su.Errors++
			su.Cases = append(su.Cases, junitCase{Classname: s.Name, Name: "run", Time: "0",
				Error: &junitMessage{Message: "could not run: " + oneLine(s.Failure), Type: "could-not-run", Body: s.Failure}})
		}
		if s.Interrupted != "" {
			su.Errors++
			su.Properties = append(su.Properties, junitProperty{"interrupted", s.Interrupted})
			su.Cases = append(su.Cases, junitCase{Classname: s.Name, Name: "interrupted", Time: fmt.Sprintf("%.3f", s.DurationS),
				Error: &junitMessage{Message: oneLine(s.Interrupted), Type: "interrupted",
					Body: s.Interrupted + "\nThe checks below judged only what was seen until then.\n"}})
		}
		for _, v := range s.Checks {
			c := junitCase{Classname: s.Name, Name: v.Name, Time: "0"}
			switch v.Status {
			case check.Pass:
			case check.NotMeasurable:
				su.Failures++
				c.Failure = &junitMessage{
					Message: "not measurable: " + reason(v.Summary),
					Type:    string(check.NotMeasurable),
					Body:    "not measurable: " + reason(v.Summary) + "\nA check that could not look is never a pass.\n" + evidenceBody(v),
				}
			default:
				su.Failures++
				c.Failure = &junitMessage{
					Message: fmt.Sprintf("%d violation(s): %s", v.Violations, oneLine(v.Summary)),
					Type:    string(v.Status),
					Body:    evidenceBody(v),
				}
			}
			su.Cases = append(su.Cases, c)
		}
		su.Tests = len(su.Cases)
		out.Tests += su.Tests
		out.Failures += su.Failures
		out.Errors += su.Errors
		out.Skipped += su.Skipped
		total += s.DurationS
		out.Suites = append(out.Suites, su)
	}
	out.Time = fmt.Sprintf("%.3f", total)
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(out); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

func evidenceBody(v check.Verdict) string {
	var b strings.Builder
	for _, e := range v.Evidence {
		b.WriteString(evidenceLine(e))
		b.WriteString("\n")
	}
	if n := v.Violations - len(v.Evidence); n > 0 {
		fmt.Fprintf(&b, "... and %d more\n", n)
	}
	return b.String()
}
