// Package verdict is what a check concludes: a status (pass, fail, not
// measurable), the number of violations, a summary and bounded evidence.
// It is plain data shared by the checkers (harness/check), the run summary
// (harness/result) and the reports, so that none of those imports another
// to speak of a verdict.
package verdict

import (
	"slices"
	"time"
)

// Status is a verdict's outcome.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	// NotMeasurable: the target exposes nothing the checker can judge by. It
	// is never counted as a pass.
	NotMeasurable Status = "not-measurable"
)

// Evidence points at one violation: where, when and who.
type Evidence struct {
	Scope  string        `json:"scope,omitempty"`
	Seq    uint64        `json:"seq,omitempty"`
	Client string        `json:"client,omitempty"`
	At     time.Duration `json:"at_ns,omitempty"`
	Detail string        `json:"detail"`
}

// MaxEvidence bounds the evidence a verdict keeps; Violations still counts all.
const MaxEvidence = 20

// Verdict is a checker's result.
type Verdict struct {
	Name       string     `json:"name"`
	Status     Status     `json:"status"`
	Violations int        `json:"violations"`
	Summary    string     `json:"summary"`
	Evidence   []Evidence `json:"evidence"`

	// kinds[i] is the kind of Evidence[i] when it was added with AddKind.
	kinds []string
}

// Passed reports whether the verdict counts as a pass.
func (v Verdict) Passed() bool { return v.Status == Pass }

// Add records one violation, keeping at most MaxEvidence pieces of evidence.
func (v *Verdict) Add(e Evidence) {
	v.AddKind("", e)
}

// AddKind records one violation of a kind (a short name such as "outside
// the map") so that the evidence shows every kind found: once MaxEvidence
// pieces are kept, the first violation of a kind not yet shown replaces the
// newest piece of the kind shown most often.
func (v *Verdict) AddKind(kind string, e Evidence) {
	v.Violations++
	for len(v.kinds) < len(v.Evidence) {
		v.kinds = append(v.kinds, "")
	}
	if len(v.Evidence) < MaxEvidence {
		v.Evidence = append(v.Evidence, e)
		v.kinds = append(v.kinds, kind)
		return
	}
	if kind == "" || slices.Contains(v.kinds, kind) {
		return
	}
	counts := map[string]int{}
	for _, k := range v.kinds {
		counts[k]++
	}
	for i := len(v.kinds) - 1; i >= 0; i-- {
		if counts[v.kinds[i]] > 1 {
			v.Evidence[i], v.kinds[i] = e, kind
			return
		}
	}
}
