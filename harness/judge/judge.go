// Package judge turns one scenario's event stream into its result: the
// metrics (harness/metrics), every checker's verdict and the
// result.Scenario they fill. It is the one verdict path: the engine feeds a
// Judge live, `report merge` feeds one from shard files, so a checker or a
// metric can never be judged one way in a run and another in a merge.
//
// A Judge is not safe for concurrent use. Its owner (the engine's
// dispatcher goroutine, or the merge loop) calls Observe for every event in
// order, then Finish once the stream has ended, then Verdicts.
package judge

import (
	"context"
	"fmt"
	"time"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// Judge holds a scenario's metrics collector and checkers.
type Judge struct {
	s      *scenario.Scenario
	col    *metrics.Collector
	checks []check.Checker
	names  []string
}

// New builds the checkers of s (a bad check spec is an error, before
// anything touches the network) and a metrics collector whose roles count
// the plan's clients for which counted returns true (a shard's share; nil
// counts every client).
func New(s *scenario.Scenario, plan *scenario.Plan, counted func(client int) bool) (*Judge, error) {
	j := &Judge{s: s}
	for _, cs := range s.Checks {
		ck, err := cs.New()
		if err != nil {
			return nil, fmt.Errorf("%s: check %q: %w", s.File, cs.Name, err)
		}
		j.checks = append(j.checks, ck)
		j.names = append(j.names, cs.Name)
	}
	roles := make([]metrics.RoleInfo, len(s.Roles))
	for i, rl := range s.Roles {
		b, _ := scenario.LookupBehaviour(rl.Behaviour)
		roles[i] = metrics.RoleInfo{Name: rl.Name, Behaviour: rl.Behaviour, Attack: b.Attack}
	}
	roleOf := make([]int, len(plan.Clients))
	for i, c := range plan.Clients {
		roleOf[i] = c.RoleIndex
		if counted == nil || counted(i) {
			roles[c.RoleIndex].Clients++
		}
	}
	j.col = metrics.New(roles, roleOf)
	return j, nil
}

// Start takes the baselines of the checkers that need one (check.Starter),
// before any client connects.
func (j *Judge) Start(ctx context.Context, env check.Env) error {
	for i, ck := range j.checks {
		if st, ok := ck.(check.Starter); ok {
			if err := st.Start(ctx, env); err != nil {
				return fmt.Errorf("check %q: start: %w", j.names[i], err)
			}
		}
	}
	return nil
}

// Observe feeds one event to the metrics and every checker.
func (j *Judge) Observe(e *event.Event) {
	j.col.Observe(e)
	for _, ck := range j.checks {
		ck.Observe(e)
	}
}

// Checks returns the checkers and their names, in the scenario's order (for
// live polling: check.Live).
func (j *Judge) Checks() ([]check.Checker, []string) { return j.checks, j.names }

// Metrics is the collector (for live figures while events are observed).
func (j *Judge) Metrics() *metrics.Collector { return j.col }

// Finish closes the metrics at elapsed (the run's end as the events saw
// it) and fills res's figures and duration.
func (j *Judge) Finish(res *result.Scenario, elapsed time.Duration) {
	j.col.Finish(elapsed)
	j.col.Fill(res)
	res.DurationS = elapsed.Seconds()
}

// Verdicts asks every checker for its verdict, in order, and appends them to
// res.Checks; res.Passed becomes false when one is not a pass or res has a
// Failure or was Interrupted. given, when not nil, may supply checker i's
// verdict instead (a merge combines the shards' own Starter verdicts).
func (j *Judge) Verdicts(ctx context.Context, env check.Env, res *result.Scenario, given func(i int, ck check.Checker) (check.Verdict, bool)) {
	res.Passed = res.Failure == "" && res.Interrupted == ""
	for i, ck := range j.checks {
		var v check.Verdict
		ok := false
		if given != nil {
			v, ok = given(i, ck)
		}
		if !ok {
			v = ck.Verdict(ctx, env)
		}
		if v.Name == "" {
			v.Name = j.names[i]
		}
		if !v.Passed() {
			res.Passed = false
		}
		res.Checks = append(res.Checks, v)
	}
}
