package scenario

import (
	"slices"
	"sort"
	"strings"

	"github.com/bidikit/bidikit/internal/registry"
)

// Behaviour declares a role behaviour to the parser: which service it
// speaks, whether it attacks, and its parameter struct. The package that
// implements a behaviour (harness/engine: one file per behaviour, its
// parameters beside the code that uses them) registers it in init, so every
// program that runs scenarios knows every behaviour it can run.
type Behaviour struct {
	Name    string
	Service string // Chat, Collab, Game, or "" for every service
	Attack  bool
	Summary string
	// DefaultRate is the per-client rate when the role gives none.
	DefaultRate float64
	// Params returns a pointer to a fresh parameter struct with defaults set;
	// the parser strictly decodes the role's `params:` into it, then calls
	// its CheckParams method (ParamsChecker) when it has one.
	Params func() any
}

// behaviours holds the first behaviour registered under each name (every
// service's, or one service's); perService holds each service's own under
// "service/name", so that one name (chatter) may be registered once per
// service that implements it (chat, custom).
var (
	behaviours = registry.New[Behaviour]("behaviour")
	perService = registry.New[Behaviour]("behaviour")
)

// RegisterBehaviour declares b. It panics on a duplicate name for the same
// service, or on a name that a behaviour for every service already has (a
// programming error caught at init).
func RegisterBehaviour(b Behaviour) {
	if b.Service != "" {
		perService.Register(b.Service+"/"+b.Name, b)
		if first, taken := behaviours.Lookup(b.Name); taken {
			if first.Service == "" {
				panic("scenario: behaviour " + b.Name + " is registered for every service already")
			}
			return // another service's behaviour of that name came first
		}
	}
	behaviours.Register(b.Name, b)
}

// LookupBehaviour returns the behaviour registered under name (the first
// one, when several services have one of that name; see
// LookupBehaviourFor).
func LookupBehaviour(name string) (Behaviour, bool) { return behaviours.Lookup(name) }

// LookupBehaviourFor returns service's behaviour called name, or the
// behaviour registered under name for every service (or for another
// service: the caller then says it does not fit).
func LookupBehaviourFor(service, name string) (Behaviour, bool) {
	if b, ok := perService.Lookup(service + "/" + name); ok {
		return b, true
	}
	return behaviours.Lookup(name)
}

// BehaviourNames lists the registered behaviours a service's scenario may
// use ("" : all), sorted, each once.
func BehaviourNames(service string) []string {
	if service == "" {
		return behaviours.Names()
	}
	var out []string
	for _, n := range behaviours.Names() {
		if b, _ := LookupBehaviourFor(service, n); b.Service == "" || b.Service == service {
			out = append(out, n)
		}
	}
	for _, k := range perService.Names() {
		svc, n, _ := strings.Cut(k, "/")
		if svc == service && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// ParamsChecker is implemented by a behaviour's parameter struct whose
// values need checking beyond their types: CheckParams reports each bad
// value through pc.Bad, naming the field by its YAML key.
type ParamsChecker interface {
	CheckParams(pc *ParamsCheck)
}

// ParamsCheck is what CheckParams may consult: the role the parameters
// belong to and the scenario file (relative paths are relative to it).
type ParamsCheck struct {
	Role Role
	File string
	// Bad reports that field (a YAML key of the params) is wrong; the error
	// points at the field, or at the role when the value is a default.
	Bad func(field, format string, args ...any)
}

// BodyBytes reports body_bytes when n is outside 1..MaxBodyBytes.
func (pc *ParamsCheck) BodyBytes(field string, n int) {
	if n < 1 || n > MaxBodyBytes {
		pc.Bad(field, "must be between 1 and %d, got %d", MaxBodyBytes, n)
	}
}

// RoomsPerClient reports rooms_per_client when n is not between 1 and the
// role's scopes.
func (pc *ParamsCheck) RoomsPerClient(n int) {
	if n < 1 {
		pc.Bad("rooms_per_client", "must be at least 1, got %d", n)
	} else if n > pc.Role.Scopes {
		pc.Bad("rooms_per_client", "%d is more than the role's %d rooms", n, pc.Role.Scopes)
	}
}

// Scoper is implemented by a behaviour's parameters when one client uses
// more than one of its role's scopes (the chat behaviours' rooms_per_client).
type Scoper interface {
	ScopesPerClient() int
}

// ScopesPerClient is how many of its role's scopes one client uses: what
// its parameters say (Scoper), 1 otherwise.
func ScopesPerClient(params any) int {
	if s, ok := params.(Scoper); ok {
		return max(s.ScopesPerClient(), 1)
	}
	return 1
}
