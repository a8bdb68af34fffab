package workshop

import (
	"context"
	"fmt"
	"log/slog"
	"sort"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/suite"
)

// CheckOptions say what Check runs the suite against. The zero value starts
// the exercise's broken server in-process.
type CheckOptions struct {
	// Target is the student's server (host:port); "" starts a server
	// in-process: the broken one, or the reference with Reference.
	Target string
	// AdminURL is the target's admin HTTP base URL (for the leaks check);
	// ignored when Check starts the server itself. Without it against a
	// Target, the leaks check is not measurable (never green).
	AdminURL string
	// Reference runs the suite against the reference server instead of the
	// broken one (Target must be empty).
	Reference bool
	// Log receives harness-side and in-process server logs; nil discards.
	Log *slog.Logger
	// Progress, when set, is called about every 250 ms while a scenario runs.
	Progress func(engine.Progress)
	// Conn holds engine options for dialing Target (TLS, a token: the
	// CLI's connection flags); ignored when Check starts the server.
	Conn []engine.Option
}

// Outcome is one run of an exercise's suite.
type Outcome struct {
	// Target is what the suite ran against ("in-process broken server
	// 127.0.0.1:PORT", the student's address, ...).
	Target    string
	Scenarios []result.Scenario
}

// Failed returns the names of the checks that failed in any scenario,
// sorted and without repeats; a scenario that could not run at all counts
// as "run". Checks that were not measurable are not here but in
// NotMeasurable: neither kind is a pass.
func (o Outcome) Failed() []string {
	return o.names(func(v check.Verdict) bool { return v.Status == check.Fail }, true)
}

// NotMeasurable returns the names of the checks that could not judge in
// any scenario (no evidence either way, e.g. leaks without an admin URL),
// sorted and without repeats. A check that failed in another scenario is
// listed in Failed only.
func (o Outcome) NotMeasurable() []string {
	failed := map[string]bool{}
	for _, n := range o.Failed() {
		failed[n] = true
	}
	var out []string
	for _, n := range o.names(func(v check.Verdict) bool { return v.Status != check.Fail && !v.Passed() }, false) {
		if !failed[n] {
			out = append(out, n)
		}
	}
	return out
}

// names lists the checks whose verdict matches, sorted without repeats;
// with run, "run" too when a scenario could not run.
func (o Outcome) names(match func(check.Verdict) bool, run bool) []string {
	seen := map[string]bool{}
	for _, s := range o.Scenarios {
		if run && s.Failure != "" {
			seen["run"] = true
		}
		for _, v := range s.Checks {
			if match(v) {
				seen[v.Name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Green reports whether the suite proved the server right: every scenario
// ran and judged something, and every check of every scenario passed on
// evidence. A failed or not-measurable check, a scenario that could not
// run or that has no check at all make it not green.
func (o Outcome) Green() bool {
	if len(o.Scenarios) == 0 {
		return false
	}
	for _, s := range o.Scenarios {
		if s.Failure != "" || len(s.Checks) == 0 {
			return false
		}
		for _, v := range s.Checks {
			if !v.Passed() {
				return false
			}
		}
	}
	return true
}

// noAdminURL is why a leaks verdict cannot pass when Check has no admin
// URL: goroutines and heap live behind it.
const noAdminURL = "no --admin-url given, so the server's goroutines and memory could not be counted (channelz alone cannot see a goroutine that outlives its stream); give --admin-url http://HOST:PORT (bidikit workshop serve and make run print it)"

// withoutAdmin is v as judged without an admin URL: a leaks pass is not
// measurable (a failure found through channelz stays a failure).
func withoutAdmin(v check.Verdict) check.Verdict {
	if v.Name == "leaks" && v.Passed() {
		v.Status = check.NotMeasurable
		v.Summary = noAdminURL + " (seen: " + v.Summary + ")"
	}
	return v
}

// Check runs ex's suite through the harness engine and returns the
// outcome. It blocks for the suite's duration (each scenario's duration,
// settle and checks' settle times). An error means the suite could not run
// (bad options, a server that would not start, ctx cancelled); failed
// checks are not errors.
func Check(ctx context.Context, ex Exercise, o CheckOptions) (Outcome, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	scenarios, err := ex.Scenarios()
	if err != nil {
		return Outcome{}, err
	}
	var out Outcome
	t := suite.Target{AdminURL: o.AdminURL}
	switch {
	case o.Target != "" && o.Reference:
		return Outcome{}, fmt.Errorf("--reference runs the reference server in-process: leave out --target")
	case o.Target != "":
		t.Addrs = []string{o.Target}
		out.Target = o.Target
	case o.Reference:
		t.AdminURL = "" // the server's own
		t.Start = func(context.Context) (suite.Server, error) {
			srv, err := StartReference(ex.Service, log)
			if err != nil {
				return nil, fmt.Errorf("starting the reference %s server: %w", ex.Service, err)
			}
			out.Target = "in-process reference server " + srv.Addr
			return suiteServer{srv}, nil
		}
	default:
		t.AdminURL = ""
		t.Start = func(context.Context) (suite.Server, error) {
			srv, err := Start(ex, "127.0.0.1:0", "")
			if err != nil {
				return nil, err
			}
			out.Target = fmt.Sprintf("in-process broken server of exercise %d, %s", ex.Number, srv.Addr)
			return suiteServer{srv}, nil
		}
	}
	st, err := suite.Start(ctx, t)
	if err != nil {
		return Outcome{}, err
	}
	defer st.Close()
	opts := []engine.Option{engine.WithLogger(log)}
	if o.Progress != nil {
		opts = append(opts, engine.WithProgress(o.Progress, 0))
	}
	if o.Target != "" {
		opts = append(opts, o.Conn...)
	}
	run, err := suite.Run(ctx, scenarios, st, suite.Options{Engine: opts})
	for _, res := range run.Scenarios {
		if st.AdminURL == "" {
			for i := range res.Checks {
				res.Checks[i] = withoutAdmin(res.Checks[i])
			}
		}
		out.Scenarios = append(out.Scenarios, res)
	}
	if err != nil && ctx.Err() != nil {
		return out, err
	}
	return out, nil
}

// suiteServer is a workshop Server as the suite runner stops it.
type suiteServer struct{ *Server }

func (s suiteServer) Addr() string     { return s.Server.Addr }
func (s suiteServer) AdminURL() string { return s.Server.AdminURL }
