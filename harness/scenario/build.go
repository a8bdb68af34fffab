package scenario

import (
	"context"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/threshold"
)

// New and the specs it reads are how a parsed scenario, plain data, turns
// into running parts: each call makes a fresh value through the registry
// (check.New, fault.New), so no two runs, firings or judges share one.

// New makes a fresh checker for the spec: a threshold's (harness/
// threshold) when Threshold is set, else the registered check Name with
// its Params. The scenario's Service is given to a check.ServiceAware
// checker; a NotMeasurable spec gives a stand-in saying why (after its
// params were built, so they still count). Errors name the file, line,
// column and field of a bad parameter.
func (c CheckSpec) New() (check.Checker, error) {
	if c.Threshold != nil {
		return threshold.New(*c.Threshold)
	}
	ck, err := check.New(c.Name, c.Params.Decode)
	if err != nil {
		return nil, err
	}
	if c.NotMeasurable != "" {
		return &unmeasurable{v: check.Verdict{Name: c.Name, Status: check.NotMeasurable, Summary: c.NotMeasurable}}, nil
	}
	if sa, ok := ck.(check.ServiceAware); ok {
		sa.SetService(c.Service)
	}
	return ck, nil
}

// New makes a fresh fault value for the step, from the fault registered
// as Fault and the step's Params. The scheduler calls it for every firing.
func (st FaultStep) New() (fault.Fault, error) {
	f, _, err := fault.New(st.Fault, st.Params.Decode)
	return f, err
}

// unmeasurable is a check the scenario's protocol mapping cannot feed: it
// observes nothing and says why.
type unmeasurable struct{ v check.Verdict }

func (u *unmeasurable) Observe(*event.Event) {}

func (u *unmeasurable) Verdict(context.Context, check.Env) check.Verdict { return u.v }
