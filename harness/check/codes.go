package check

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
)

// statusCodes is the "status-codes" checker: bad input must be answered with
// the documented code, never UNKNOWN or INTERNAL, and the server must keep
// serving. Parameters:
//
//	forbid: [UNKNOWN, INTERNAL]            # codes no client may ever see (default)
//	expect: {malformed: [INVALID_ARGUMENT]} # per role: the codes it must see, and only those
type statusCodes struct {
	forbid   map[codes.Code]bool
	expect   map[string]map[codes.Code]bool
	seenRole map[string]map[codes.Code]int
	total    int
	v        Verdict
}

// StatusParams are the status-codes checker's parameters.
type StatusParams struct {
	Forbid []string            `yaml:"forbid"`
	Expect map[string][]string `yaml:"expect"`
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
		s := &statusCodes{forbid: map[codes.Code]bool{}, expect: map[string]map[codes.Code]bool{},
			seenRole: map[string]map[codes.Code]int{}, v: Verdict{Name: "status-codes"}}
		for _, n := range p.Forbid {
			c, err := ParseCode(n)
			if err != nil {
				return nil, fmt.Errorf("forbid: %w", err)
			}
			s.forbid[c] = true
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
	if e.Kind != event.Error && e.Kind != event.Disconnect && e.Kind != event.Kick {
		return
	}
	if e.Code == codes.OK || e.Code == codes.Canceled {
		return
	}
	s.total++
	if s.forbid[e.Code] {
		s.v.Add(Evidence{Scope: e.Scope, Client: clientName(e), At: e.At,
			Detail: fmt.Sprintf("%s got %s: %s", clientName(e), codeName(e.Code), e.Detail)})
	}
	if want, ok := s.expect[e.Role]; ok {
		if s.seenRole[e.Role] == nil {
			s.seenRole[e.Role] = map[codes.Code]int{}
		}
		s.seenRole[e.Role][e.Code]++
		if !want[e.Code] {
			s.v.Add(Evidence{Scope: e.Scope, Client: clientName(e), At: e.At,
				Detail: fmt.Sprintf("role %s expects %s but %s got %s: %s", e.Role, codeList(want), clientName(e), codeName(e.Code), e.Detail)})
		}
	}
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
	if env != nil {
		if ok, err := env.Healthy(ctx); err != nil || !ok {
			detail := "server reports NOT_SERVING after the run"
			if err != nil {
				detail = "server no longer answers health checks after the run: " + err.Error()
			}
			s.v.Add(Evidence{Detail: detail})
		}
	}
	summarise(&s.v, fmt.Sprintf("%d error statuses, all with documented codes; server still serving", s.total),
		"%d wrong or missing status codes", s.v.Violations)
	return s.v
}
