// Package matchers holds Gomega matchers for users' own suites: assert that
// a bidikit run held its guarantees, or that a server came back to its
// baseline after load.
//
//	res, err := engine.Run(ctx, sc, engine.WithTarget(addr))
//	Expect(err).NotTo(HaveOccurred())
//	Expect(res).To(matchers.HoldTotalOrder())
//	Expect(res).To(matchers.PassAllChecks())
//
//	base := check.Measure(ctx, adminURL, nil)
//	... load ...
//	Eventually(func() check.Sample { return check.Measure(ctx, adminURL, nil) }).
//		WithTimeout(20 * time.Second).Should(matchers.ReturnToBaseline(base, 20))
package matchers

import (
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/result"
)

// verdicts extracts the verdicts from a result.Scenario, *result.Scenario,
// result.Run or *result.Run.
func verdicts(actual any) ([]check.Verdict, error) {
	switch v := actual.(type) {
	case result.Scenario:
		return v.Checks, nil
	case *result.Scenario:
		if v == nil {
			return nil, fmt.Errorf("expected a run result, got a nil *result.Scenario")
		}
		return v.Checks, nil
	case result.Run:
		return runVerdicts(&v), nil
	case *result.Run:
		if v == nil {
			return nil, fmt.Errorf("expected a run result, got a nil *result.Run")
		}
		return runVerdicts(v), nil
	}
	return nil, fmt.Errorf("expected a result.Scenario or result.Run, got %T", actual)
}

func runVerdicts(r *result.Run) []check.Verdict {
	var out []check.Verdict
	for _, s := range r.Scenarios {
		for _, v := range s.Checks {
			v.Name = s.Name + "/" + v.Name
			out = append(out, v)
		}
	}
	return out
}

func describe(v check.Verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%d violations) %s", v.Name, v.Status, v.Violations, v.Summary)
	for _, e := range v.Evidence {
		fmt.Fprintf(&b, "\n    scope=%s seq=%d client=%s at=%s: %s", e.Scope, e.Seq, e.Client, e.At, e.Detail)
	}
	return b.String()
}

type passChecks struct {
	names  []string // empty: all
	failed []check.Verdict
	miss   []string
}

// PassCheck succeeds when the run result has a verdict for each named
// check and every one passed. "not-measurable" is not a pass.
func PassCheck(names ...string) types.GomegaMatcher { return &passChecks{names: names} }

// PassAllChecks succeeds when every verdict of the run result passed.
func PassAllChecks() types.GomegaMatcher { return &passChecks{} }

// HoldTotalOrder succeeds when the chat ordering guarantees held: one
// order per room, no gaps, no duplicates, no lost acknowledged message.
func HoldTotalOrder() types.GomegaMatcher {
	return PassCheck("total-order", "no-gaps", "no-duplicates", "no-lost-acks")
}

func (m *passChecks) Match(actual any) (bool, error) {
	vs, err := verdicts(actual)
	if err != nil {
		return false, err
	}
	m.failed, m.miss = nil, nil
	if len(m.names) == 0 {
		if len(vs) == 0 {
			return false, fmt.Errorf("the run result has no verdicts")
		}
		for _, v := range vs {
			if !v.Passed() {
				m.failed = append(m.failed, v)
			}
		}
		return len(m.failed) == 0, nil
	}
	for _, n := range m.names {
		found := false
		for _, v := range vs {
			if v.Name == n || strings.HasSuffix(v.Name, "/"+n) {
				found = true
				if !v.Passed() {
					m.failed = append(m.failed, v)
				}
			}
		}
		if !found {
			m.miss = append(m.miss, n)
		}
	}
	return len(m.failed) == 0 && len(m.miss) == 0, nil
}

func (m *passChecks) FailureMessage(any) string {
	var b strings.Builder
	b.WriteString("Expected the run to pass its checks")
	if len(m.miss) > 0 {
		fmt.Fprintf(&b, "\nno verdict for: %s (add them to the scenario's checks)", strings.Join(m.miss, ", "))
	}
	for _, v := range m.failed {
		b.WriteString("\n  " + describe(v))
	}
	return b.String()
}

func (m *passChecks) NegatedFailureMessage(any) string {
	return "Expected the run to fail at least one of its checks, but all passed"
}

type baseline struct {
	base      check.Sample
	goroutine int
	why       []string
}

// ReturnToBaseline succeeds when a check.Sample is within
// goroutinesOver goroutines of base, and has no more open sockets and
// streams than base (fields that are -1 on either side are not compared).
// Use it with Eventually and check.Measure.
func ReturnToBaseline(base check.Sample, goroutinesOver int) types.GomegaMatcher {
	return &baseline{base: base, goroutine: goroutinesOver}
}

func (m *baseline) Match(actual any) (bool, error) {
	s, ok := actual.(check.Sample)
	if !ok {
		return false, fmt.Errorf("ReturnToBaseline expects a check.Sample, got %T", actual)
	}
	m.why = nil
	if m.base.Goroutines < 0 && m.base.Sockets < 0 && m.base.Streams < 0 {
		return false, fmt.Errorf("the baseline measured nothing: the server exposes no admin endpoint or channelz")
	}
	if m.base.Goroutines >= 0 && s.Goroutines >= 0 && s.Goroutines-m.base.Goroutines > m.goroutine {
		m.why = append(m.why, fmt.Sprintf("goroutines %d, baseline %d (+%d allowed)", s.Goroutines, m.base.Goroutines, m.goroutine))
	}
	if m.base.Sockets >= 0 && s.Sockets > m.base.Sockets {
		m.why = append(m.why, fmt.Sprintf("open sockets %d, baseline %d", s.Sockets, m.base.Sockets))
	}
	if m.base.Streams >= 0 && s.Streams > m.base.Streams {
		m.why = append(m.why, fmt.Sprintf("open streams %d, baseline %d", s.Streams, m.base.Streams))
	}
	return len(m.why) == 0, nil
}

func (m *baseline) FailureMessage(any) string {
	return "Expected the server back at its baseline:\n  " + strings.Join(m.why, "\n  ")
}

func (m *baseline) NegatedFailureMessage(any) string {
	return "Expected the server not to be back at its baseline, but it was"
}
