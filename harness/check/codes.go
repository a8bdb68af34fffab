package check

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/fault"
)

// statusCodes is the "status-codes" checker: every status a client sees
// must be one the service's contract documents (proto/bidikit/*/v1: the
// codes that end a stream, the codes of Error events, the codes of game
// kicks), never UNKNOWN or INTERNAL, and the server must keep serving.
// UNAUTHENTICATED and PERMISSION_DENIED are not expected by default: the
// harness authenticates every client, so a scenario must expect them for a
// role. Codes the harness caused itself (a cancel, a fault it injected, an
// attack dropping its own stream) are not the server's. A stream the server
// did not end within the grace after the client's CloseSend is its own
// violation (how many, and time-to-close percentiles), unless the harness
// itself paused (event.HarnessLag) for more than a tenth of the grace in
// that span: then its own reading may have been late, and that part is not
// measurable, naming the lag. After the run every
// target must still serve, except those the run killed itself (a
// kill-server fault whose server says what it took down) and those the
// scenario expects down. Parameters:
//
//	forbid: [UNKNOWN, INTERNAL]            # codes no client may ever see (default)
//	allow: [ABORTED]                        # codes added to the contract for every role
//	expect: {malformed: [INVALID_ARGUMENT]} # per role: the codes it must see, and only those
//	expect_down: [2]                        # targets (1-based, in --target order) killed by an
//	                                        # operator during the run: not judged by their health
type statusCodes struct {
	forbid   map[codes.Code]bool
	allow    map[codes.Code]bool
	expect   map[string]map[codes.Code]bool
	seenRole map[string]map[codes.Code]int
	contract *contract
	service  string
	// expectDown: 1-based target positions the scenario expects down.
	expectDown map[int]bool
	faulted    map[int]bool
	// netFault names the first connection fault of the run (latency,
	// blackhole, ...: every connection's), "" when none fired.
	netFault string
	killed   bool // a server-process fault (kill-server) fired
	// excusedUnclosed counts ends after the grace on streams a fault
	// disturbed (a paused reader, a slowed or blackholed connection): the
	// harness's doing, not judged.
	excusedUnclosed int
	// uncoded counts server error messages without a status code
	// (event.FieldNoCode): not judged.
	uncoded  int
	ends     int // stream ends observed
	statuses int // non-OK statuses judged
	// toClose: CloseSend-to-end times of streams the client closed;
	// unclosed: those the server did not end within the grace.
	toClose       *hdrhistogram.Histogram
	unclosed      int
	firstUnclosed *event.Event
	// unclosedFrom..unclosedTo spans the unclosed streams' graces; lag is
	// the harness's own lag, weighed against them.
	unclosedFrom, unclosedTo time.Duration
	lag                      harnessLag
	v                        Verdict
}

// contract is what a service's proto documents.
type contract struct {
	ends   map[codes.Code]bool // codes that end a stream (Disconnect)
	errors map[codes.Code]bool // codes of Error events (stream stays open)
	kicks  map[codes.Code]bool // codes a Kick carries (game)
}

func codeSet(cs ...codes.Code) map[codes.Code]bool {
	m := map[codes.Code]bool{}
	for _, c := range cs {
		m[c] = true
	}
	return m
}

// contracts are the documented codes per service (see each proto's header
// comment and its Error message). UNAVAILABLE Error events come from
// clustered servers (a resend while a stream leader is elected, an
// unreachable match owner).
var contracts = map[string]*contract{
	"chat": {
		ends:   codeSet(codes.OK, codes.InvalidArgument, codes.ResourceExhausted, codes.Unavailable),
		errors: codeSet(codes.InvalidArgument, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition, codes.Unavailable),
	},
	"collab": {
		ends:   codeSet(codes.OK, codes.InvalidArgument, codes.ResourceExhausted, codes.Unavailable),
		errors: codeSet(codes.InvalidArgument, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition, codes.Unavailable),
	},
	"game": {
		ends:   codeSet(codes.OK, codes.InvalidArgument, codes.ResourceExhausted, codes.Unavailable),
		errors: codeSet(codes.InvalidArgument, codes.PermissionDenied, codes.ResourceExhausted, codes.FailedPrecondition, codes.Unavailable),
		// Kick reasons: flood and slow consumer, cheating, idle, shutdown.
		kicks: codeSet(codes.ResourceExhausted, codes.InvalidArgument, codes.DeadlineExceeded, codes.Unavailable),
	},
}

// SetService implements ServiceAware: the contract to judge by.
func (s *statusCodes) SetService(service string) {
	s.service = service
	s.contract = contracts[service]
}

// StatusParams are the status-codes checker's parameters.
type StatusParams struct {
	Forbid     []string            `yaml:"forbid"`
	Allow      []string            `yaml:"allow"`
	Expect     map[string][]string `yaml:"expect"`
	ExpectDown []int               `yaml:"expect_down"`
}

// ParseCode reads a gRPC code name such as "INVALID_ARGUMENT" (any case).
func ParseCode(name string) (codes.Code, error) {
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if strings.EqualFold(codeName(c), name) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown gRPC status code %q (e.g. INVALID_ARGUMENT, RESOURCE_EXHAUSTED)", name)
}

// codeName is the canonical upper-case name of c, as in google.rpc.Code.
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func init() {
	Register("status-codes", func(decode func(any) error) (Checker, error) {
		p := StatusParams{Forbid: []string{"UNKNOWN", "INTERNAL"}}
		if err := decode(&p); err != nil {
			return nil, err
		}
		s := &statusCodes{forbid: map[codes.Code]bool{}, allow: map[codes.Code]bool{}, expect: map[string]map[codes.Code]bool{},
			seenRole: map[string]map[codes.Code]int{}, faulted: map[int]bool{}, expectDown: map[int]bool{},
			toClose: hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3), v: Verdict{Name: "status-codes"}}
		for _, n := range p.Allow {
			c, err := ParseCode(n)
			if err != nil {
				return nil, fmt.Errorf("allow: %w", err)
			}
			s.allow[c] = true
		}
		for _, n := range p.Forbid {
			c, err := ParseCode(n)
			if err != nil {
				return nil, fmt.Errorf("forbid: %w", err)
			}
			s.forbid[c] = true
		}
		for _, pos := range p.ExpectDown {
			if pos < 1 {
				return nil, fmt.Errorf("expect_down: %d is no target position (1 is the first --target)", pos)
			}
			s.expectDown[pos] = true
		}
		for role, names := range p.Expect {
			s.expect[role] = map[codes.Code]bool{}
			for _, n := range names {
				c, err := ParseCode(n)
				if err != nil {
					return nil, fmt.Errorf("expect.%s: %w", role, err)
				}
				s.expect[role][c] = true
			}
		}
		return s, nil
	})
}

func (s *statusCodes) Observe(e *event.Event) {
	if s.lag.observe(e) {
		return
	}
	switch e.Kind {
	case event.Fault:
		s.faulted[e.Client] = true
		if sp, ok := fault.Lookup(e.Detail); ok && sp.Scope == fault.Connection && s.netFault == "" {
			s.netFault = e.Detail
		}
		if sp, ok := fault.Lookup(e.Detail); ok && sp.Scope == fault.ServerProcess {
			s.killed = true
		}
		return
	case event.Connect:
		delete(s.faulted, e.Client)
		return
	case event.Disconnect:
		s.ends++
		if e.Field == event.FieldCloseGrace {
			if s.faulted[e.Client] || s.netFault != "" {
				s.excusedUnclosed++
				return
			}
			s.unclosed++
			from := max(e.At-e.Latency, 0)
			if s.firstUnclosed == nil {
				c := *e
				s.firstUnclosed = &c
				s.unclosedFrom, s.unclosedTo = from, e.At
			}
			s.unclosedFrom, s.unclosedTo = min(s.unclosedFrom, from), max(s.unclosedTo, e.At)
			return
		}
		if e.Latency > 0 && e.Code == codes.OK {
			_ = s.toClose.RecordValue(max(e.Latency.Microseconds(), 1))
		}
	case event.Error, event.Kick:
		if e.Field == event.FieldNoCode {
			s.uncoded++
			return
		}
	default:
		return
	}
	if e.Code == codes.OK || e.Code == codes.Canceled || e.Field == event.FieldClientEnd {
		return
	}
	if e.Kind == event.Disconnect && s.faulted[e.Client] {
		return // the harness broke this stream itself
	}
	s.statuses++
	who := clientName(e)
	if want, ok := s.expect[e.Role]; ok {
		if s.seenRole[e.Role] == nil {
			s.seenRole[e.Role] = map[codes.Code]int{}
		}
		s.seenRole[e.Role][e.Code]++
		if !want[e.Code] {
			s.v.Add(Evidence{Scope: e.Scope, Client: who, At: e.At,
				Detail: fmt.Sprintf("role %s expects %s but %s got %s: %s", e.Role, codeList(want), who, codeName(e.Code), e.Detail)})
		}
		return
	}
	if s.forbid[e.Code] {
		s.v.Add(Evidence{Scope: e.Scope, Client: who, At: e.At,
			Detail: fmt.Sprintf("%s got %s: %s", who, codeName(e.Code), e.Detail)})
		return
	}
	if s.contract == nil || s.allow[e.Code] {
		return
	}
	var documented map[codes.Code]bool
	var where string
	switch e.Kind {
	case event.Disconnect:
		documented, where = s.contract.ends, "to end a stream"
	case event.Error:
		documented, where = s.contract.errors, "in an Error event"
	case event.Kick:
		documented, where = s.contract.kicks, "in a Kick"
	}
	if !documented[e.Code] {
		s.v.Add(Evidence{Scope: e.Scope, Client: who, At: e.At,
			Detail: fmt.Sprintf("%s got %s %s, which the %s contract does not document %s (documented: %s): %s",
				who, codeName(e.Code), kindWord(e.Kind), s.service, where, codeList(documented), e.Detail)})
	}
}

// kindWord names how a status reached the client.
func kindWord(k event.Kind) string {
	switch k {
	case event.Error:
		return "as an Error event"
	case event.Kick:
		return "with a Kick"
	}
	return "as the stream's status"
}

func codeList(m map[codes.Code]bool) string {
	var out []string
	for c := range m {
		out = append(out, codeName(c))
	}
	sort.Strings(out)
	return strings.Join(out, " or ")
}

func (s *statusCodes) Verdict(ctx context.Context, env Env) Verdict {
	roles := make([]string, 0, len(s.expect))
	for r := range s.expect {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, role := range roles {
		got := 0
		for c := range s.expect[role] {
			got += s.seenRole[role][c]
		}
		if got == 0 {
			s.v.Add(Evidence{Detail: fmt.Sprintf("role %s never got %s: the bad input went unanswered", role, codeList(s.expect[role]))})
		}
	}
	closeNote := "no client-closed streams"
	if n := s.toClose.TotalCount(); n > 0 {
		ms := func(q float64) string {
			return (time.Duration(s.toClose.ValueAtQuantile(q)) * time.Microsecond).Round(100 * time.Microsecond).String()
		}
		closeNote = fmt.Sprintf("%d streams closed by the server after CloseSend in p50 %s, p99 %s, max %s", n, ms(50), ms(99),
			(time.Duration(s.toClose.Max()) * time.Microsecond).Round(100*time.Microsecond))
	}
	unmeasured := ""
	if s.unclosed > 0 {
		e := s.firstUnclosed
		lag := s.lag.in(s.unclosedFrom, s.unclosedTo)
		if lag.windows > 0 && lag.pause() > e.Latency/10 {
			unmeasured = fmt.Sprintf("%d of %d stream ends came after the grace following the client's CloseSend, but %s in that span (more than a tenth of the %s grace): the harness may have read the ends late, not blamed on the server",
				s.unclosed, s.ends, lag, e.Latency.Round(time.Millisecond))
		} else {
			s.v.Add(Evidence{Scope: e.Scope, Client: clientName(e), At: e.At,
				Detail: fmt.Sprintf("%d of %d stream ends: the server did not end the stream within the grace after the client's CloseSend (first: %s: %s); %s; %s",
					s.unclosed, s.ends, clientName(e), e.Detail, closeNote, lag)})
		}
	}
	if s.excusedUnclosed > 0 {
		why := "a fault the harness injected was on their stream"
		if s.netFault != "" {
			why = "the run's " + s.netFault + " fault was on every connection"
		}
		closeNote += fmt.Sprintf("; %d stream end(s) after the grace not judged: %s", s.excusedUnclosed, why)
	}
	healthy := "server still serving"
	if env == nil {
		healthy = ""
	} else if hs := targetsHealth(ctx, env, len(s.expectDown) > 0 || s.killed); hs != nil {
		var why string
		healthy, why = s.judgeTargets(hs)
		if why != "" {
			unmeasured = strings.TrimPrefix(unmeasured+"; "+why, "; ")
		}
	} else if ok, err := env.Healthy(ctx); err != nil && ctx.Err() != nil {
		// The verdict's own time ran out (other checks settled first):
		// the harness did not ask, the server did not fail to answer.
		unmeasured = strings.TrimPrefix(unmeasured+"; the server's health was not asked in time: the verdict's deadline passed ("+err.Error()+")", "; ")
	} else if err != nil || !ok {
		detail := "server reports NOT_SERVING after the run"
		if err != nil {
			detail = "server no longer answers health checks after the run: " + err.Error()
		}
		if len(s.expectDown) > 0 {
			// The down target may be the one expected down (a merged
			// report's env knows no targets): not blamed, not judged.
			unmeasured = strings.TrimPrefix(unmeasured+"; whether the server still serves: "+detail+
				", and expect_down cannot be honoured here (the target list is not known)", "; ")
		} else {
			s.v.Add(Evidence{Detail: detail})
		}
	}
	if s.v.Violations == 0 {
		if s.ends == 0 {
			return notMeasurable(&s.v, "no stream ended during the run: no status to judge")
		}
		if healthy == "" {
			return notMeasurable(&s.v, "%d stream ends judged, but the server's health could not be asked (no target)", s.ends)
		}
		if unmeasured != "" {
			return notMeasurable(&s.v, "%s; %s; %s", unmeasured, closeNote, healthy)
		}
	}
	contract := "the forbidden codes"
	if s.contract != nil {
		contract = "the " + s.service + " contract"
	}
	summarise(&s.v, fmt.Sprintf("%d stream ends, %d error statuses, all documented by %s; %s; %s", s.ends, s.statuses, contract, closeNote, healthy),
		"%d wrong or missing status codes", s.v.Violations)
	if s.uncoded > 0 {
		s.v.Summary += fmt.Sprintf("; %d server error message(s) carried no status code (error.code unmapped, unset or 0): not judged", s.uncoded)
	}
	if unmeasured != "" {
		s.v.Summary += "; not measured: " + unmeasured
	}
	return s.v
}

// targetsHealth is env's per-target health when wanted and known, else nil.
func targetsHealth(ctx context.Context, env Env, want bool) []TargetHealth {
	if te, ok := env.(TargetsEnv); ok && want {
		return te.TargetsHealth(ctx)
	}
	return nil
}

// judgeTargets files a violation for every target that is down after the
// run though neither the run killed it nor the scenario expects it down,
// and says what it found; unmeasured is why serving could not be judged
// ("" when it was): every target was killed by the run or expected down.
func (s *statusCodes) judgeTargets(hs []TargetHealth) (out, unmeasured string) {
	var serving, expected, killed []string
	for _, h := range hs {
		switch {
		case h.Killed:
			killed = append(killed, h.Target)
		case s.expectDown[h.Position] && h.Err != nil:
			expected = append(expected, fmt.Sprintf("%s (target %d)", h.Target, h.Position))
		case !h.Asked:
		case h.Err != nil:
			s.v.Add(Evidence{Detail: fmt.Sprintf("target %d (%s) no longer serves after the run, and the scenario does not expect it down (expect_down): %v",
				h.Position, h.Target, h.Err)})
		default:
			serving = append(serving, h.Target)
		}
	}
	if len(serving) == 0 {
		if len(killed)+len(expected) == len(hs) {
			unmeasured = "no target left to ask whether the server still serves: the run killed or expected down every one"
		} else {
			s.v.Add(Evidence{Detail: "no target serves after the run"})
		}
	}
	out = fmt.Sprintf("%d of %d targets still serving", len(serving), len(hs))
	if len(expected) > 0 {
		out += "; down as the scenario expects: " + strings.Join(expected, ", ")
	}
	if len(killed) > 0 {
		out += "; killed by the run: " + strings.Join(killed, ", ")
	}
	return out, unmeasured
}
