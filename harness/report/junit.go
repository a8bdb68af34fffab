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
// its evidence; a not-measurable check is <skipped> with the reason (never a
// pass); a scenario that could not run is one "run" test case with <error>.
type (
	junitSuites struct {
		XMLName  xml.Name     `xml:"testsuites"`
		Name     string       `xml:"name,attr"`
		Tests    int          `xml:"tests,attr"`
		Failures int          `xml:"failures,attr"`
		Errors   int          `xml:"errors,attr"`
		Skipped  int          `xml:"skipped,attr"`
		Time     string       `xml:"time,attr"`
		Suites   []junitSuite `xml:"testsuite"`
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
		SystemOut  string          `xml:"system-out,omitempty"`
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
	junitMessage struct {
		Message string `xml:"message,attr"`
		Type    string `xml:"type,attr,omitempty"`
		Body    string `xml:",cdata"`
	}
)

// JUnit renders the run as JUnit XML.
func JUnit(w io.Writer, run *result.Run) error {
	out := junitSuites{Name: "bidikit"}
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
			SystemOut: figuresLine(s),
		}
		if !run.StartedAt.IsZero() {
			su.Timestamp = run.StartedAt.UTC().Format("2006-01-02T15:04:05")
		}
		if s.Failure != "" {
			su.Errors++
			su.Cases = append(su.Cases, junitCase{Classname: s.Name, Name: "run", Time: "0",
				Error: &junitMessage{Message: oneLine(s.Failure), Type: "run", Body: s.Failure}})
		}
		for _, v := range s.Checks {
			c := junitCase{Classname: s.Name, Name: v.Name, Time: "0"}
			switch v.Status {
			case check.Pass:
			case check.NotMeasurable:
				su.Skipped++
				c.Skipped = &junitMessage{Message: "not measurable: " + oneLine(v.Summary)}
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
