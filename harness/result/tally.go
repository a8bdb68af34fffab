package result

import "github.com/bidikit/bidikit/harness/check"

// Counts tallies checks by outcome. Passed+Failed+NotMeasurable == Checks; a
// status other than pass and not-measurable counts as failed.
type Counts struct {
	Checks        int `json:"checks"`
	Passed        int `json:"passed"`
	Failed        int `json:"failed"`
	NotMeasurable int `json:"not_measurable"`
}

// RunCounts is Counts over every scenario of a run, plus how many scenarios
// there were and how many could not run at all (Scenario.Failure set).
type RunCounts struct {
	Counts
	Scenarios   int `json:"scenarios"`
	CouldNotRun int `json:"could_not_run"`
	// Interrupted counts the scenarios stopped before their duration
	// (Scenario.Interrupted set).
	Interrupted int `json:"interrupted"`
}

// add counts one verdict.
func (c *Counts) add(v check.Verdict) {
	c.Checks++
	switch v.Status {
	case check.Pass:
		c.Passed++
	case check.NotMeasurable:
		c.NotMeasurable++
	default:
		c.Failed++
	}
}

// Counts tallies s's checks.
func (s Scenario) Counts() Counts {
	var c Counts
	for _, v := range s.Checks {
		c.add(v)
	}
	return c
}

// OK reports whether s passed: it ran its course, and every check passed.
// Not measurable is never a pass, whatever Passed says, and neither is an
// interrupted scenario.
func (s Scenario) OK() bool {
	c := s.Counts()
	return s.Passed && s.Failure == "" && s.Interrupted == "" && c.Passed == c.Checks
}

// Counts tallies every check of every scenario of r.
func (r *Run) Counts() RunCounts {
	var c RunCounts
	for i := range r.Scenarios {
		s := r.Scenarios[i]
		c.Scenarios++
		if s.Failure != "" {
			c.CouldNotRun++
		}
		if s.Interrupted != "" {
			c.Interrupted++
		}
		for _, v := range s.Checks {
			c.add(v)
		}
	}
	return c
}

// OK reports whether the run passed: Passed is set and every scenario is
// OK. It is what decides `bidikit run`'s exit status and every report's
// verdict, so a not-measurable check fails the run in all of them alike.
func (r *Run) OK() bool {
	if !r.Passed || r.Interrupted != "" {
		return false
	}
	for i := range r.Scenarios {
		if !r.Scenarios[i].OK() {
			return false
		}
	}
	return true
}
