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
//
// ReturnToBaseline compares goroutines, live heap and channelz sockets and
// streams, and fails (a matcher error) rather than pass when a figure the
// baseline had can no longer be read.
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

// baseline is the ReturnToBaseline matcher: tol over base, with why it
// did not match (set by Match).
type baseline struct {
	base check.Sample
	tol  check.LeakTolerance
	why  []string
}

// ReturnToBaseline succeeds when a check.Sample is within goroutinesOver
// goroutines of base, within check.DefaultLeakHeapOverBytes (32 MiB) of its
// live heap, and has no more open sockets and streams than base. Use it
// with Eventually and check.Measure; ReturnToBaselineWithin takes every
// tolerance, e.g. the leaks checker's for the streams your load ended.
func ReturnToBaseline(base check.Sample, goroutinesOver int) types.GomegaMatcher {
	return ReturnToBaselineWithin(base, check.LeakTolerance{Goroutines: goroutinesOver, HeapBytes: check.DefaultLeakHeapOverBytes})
}

// ReturnToBaselineWithin succeeds when a check.Sample is within tol of
// base, figure by figure, like the leaks checker:
//
//	tol := check.LeakParams{}.Tolerance(streamsEnded) // 2 + 0.1 goroutines, 32 MiB + 16 KiB heap per ended stream
//	Eventually(func() check.Sample { return check.Measure(ctx, adminURL, nil) }).
//		WithTimeout(20 * time.Second).Should(matchers.ReturnToBaselineWithin(base, tol))
//
// It never succeeds on what it could not see: a base without a goroutine
// count, or a sample missing a figure its base had (the source stopped
// answering: a dead server), is a matcher error naming the source and why.
// Figures base lacks (heap, sockets and streams without channelz) are not
// compared.
func ReturnToBaselineWithin(base check.Sample, tol check.LeakTolerance) types.GomegaMatcher {
	return &baseline{base: base, tol: tol}
}

func (m *baseline) Match(actual any) (bool, error) {
	s, ok := actual.(check.Sample)
	if !ok {
		return false, fmt.Errorf("ReturnToBaseline expects a check.Sample, got %T", actual)
	}
	m.why = nil
	b := m.base
	if b.Goroutines < 0 {
		why := b.Unanswered("goroutines")
		if why == "" {
			why = "no figure"
		}
		return false, fmt.Errorf("the baseline has no goroutine count, nothing to compare (%s): give check.Measure the server's admin URL", why)
	}
	var lost []string
	for _, f := range []struct {
		name   string
		had    bool
		has    bool
		source string
	}{
		{"goroutines", true, s.Goroutines >= 0, "goroutines"},
		{"heap", b.HeapBytes >= 0, s.HeapBytes >= 0, "heap"},
		{"open sockets and streams", b.Sockets >= 0 && b.Streams >= 0, s.Sockets >= 0 && s.Streams >= 0, "channelz"},
	} {
		if f.had && !f.has {
			why := s.Unanswered(f.source)
			if why == "" {
				why = "no figure in the sample"
			}
			lost = append(lost, fmt.Sprintf("%s: %s", f.name, why))
		}
	}
	if len(lost) > 0 {
		return false, fmt.Errorf("not measurable: measured at the baseline but not now (is the server still up?): %s", strings.Join(lost, "; "))
	}
	if d := s.Goroutines - b.Goroutines; d > m.tol.Goroutines {
		m.why = append(m.why, fmt.Sprintf("goroutines %d, baseline %d (+%d, +%d allowed)", s.Goroutines, b.Goroutines, d, m.tol.Goroutines))
	}
	if b.HeapBytes >= 0 {
		if d := s.HeapBytes - b.HeapBytes; d > m.tol.HeapBytes {
			m.why = append(m.why, fmt.Sprintf("live heap %d bytes, baseline %d (+%d, +%d allowed)", s.HeapBytes, b.HeapBytes, d, m.tol.HeapBytes))
		}
	}
	if b.Sockets >= 0 && s.Sockets-b.Sockets > m.tol.Sockets {
		m.why = append(m.why, fmt.Sprintf("open sockets %d, baseline %d (+%d allowed)", s.Sockets, b.Sockets, m.tol.Sockets))
	}
	if b.Streams >= 0 && s.Streams-b.Streams > m.tol.Streams {
		m.why = append(m.why, fmt.Sprintf("open streams %d, baseline %d (+%d allowed)", s.Streams, b.Streams, m.tol.Streams))
	}
	return len(m.why) == 0, nil
}

func (m *baseline) FailureMessage(any) string {
	return "Expected the server back at its baseline:\n  " + strings.Join(m.why, "\n  ")
}

func (m *baseline) NegatedFailureMessage(any) string {
	return "Expected the server not to be back at its baseline, but it was"
}
