package check

// Live is implemented by checkers that judge as events arrive: Violations
// is how many violations Observe has proven so far, each of which the
// final Verdict reports too (a live count never takes one back). The
// engine calls it from the goroutine that calls Observe, between batches,
// to report a violation while the run goes on and to end the run at the
// first one (--fail-fast); it must be cheap (a field read) and must not
// block. Checkers that judge only in Verdict (no-lost-acks, sender-fifo,
// realtime-order, convergence, leaks) do not implement it: their count is
// known only at the end.
type Live interface {
	Violations() int
}

// LiveViolations is c's live violation count, and whether c judges live
// at all.
func LiveViolations(c Checker) (int, bool) {
	l, ok := c.(Live)
	if !ok {
		return 0, false
	}
	return l.Violations(), true
}

// The checkers whose Observe adds violations as it proves them. Kept here
// rather than in each checker's file: one place lists who judges live.

// Violations implements Live: reorderings seen so far.
func (d *deliveryOrder) Violations() int { return d.v.Violations }

// Violations implements Live: duplicates seen so far.
func (d *duplicates) Violations() int { return d.v.Violations }

// Violations implements Live: holes in memberships that have ended.
func (g *gaps) Violations() int { return g.v.Violations }

// Violations implements Live: sequence numbers seen holding two messages.
func (o *order) Violations() int { return o.v.Violations }

// Violations implements Live: incomplete resumes seen so far.
func (r *resume) Violations() int { return r.v.Violations }

// Violations implements Live: wrong status codes seen so far (a code that
// never came is judged in Verdict).
func (s *statusCodes) Violations() int { return s.v.Violations }

// Violations implements Live: errors honest clients got so far (the
// latency and Jain figures are judged in Verdict).
func (f *fairness) Violations() int { return f.v.Violations }

// Violations implements Live: broken game rules seen so far.
func (g *gameRules) Violations() int { return g.v.Violations }
