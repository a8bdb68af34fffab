package scenario

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"

	"github.com/bidikit/bidikit/harness/fault"
)

// Plan is everything a run decides from the scenario's seed before it
// starts: who the clients are, when they start, which scopes they use, and
// when each fault fires on whom. The same scenario and seed give the same
// Plan. A Plan is read-only once built and safe to share between goroutines.
type Plan struct {
	Seed    int64
	Clients []ClientPlan
	// Firings is the fault schedule, ordered by At then Step. A firing
	// happens with the step's Probability (0 = never) and chooses among the
	// clients of the step's roles that are active at that moment.
	Firings []Firing
}

// ClientPlan is one virtual client.
type ClientPlan struct {
	// Index is the client's position in Plan.Clients; RoleIndex its role's
	// position in Scenario.Roles; Role the role's name.
	Index     int
	RoleIndex int
	Role      string
	// User is the user id the client authenticates as (dev mode), e.g.
	// "honest-3" for the fourth client of role "honest".
	User string
	// Scopes are the rooms, documents or matches the client uses, chosen
	// from its role's scopes.
	Scopes []string
	// StartAt is when the client connects, spread over the ramp (plus the
	// role's Start).
	StartAt time.Duration
	// Seed seeds the client's own random source.
	Seed uint64
}

// Firing is one scheduled firing of a fault step.
type Firing struct {
	At time.Duration
	// Step indexes Scenario.Faults.
	Step int
	// Clients are the chosen client indices (empty for connection and
	// server faults, which act run-wide).
	Clients []int
}

// maxFiringsPerStep bounds a repeating step's schedule.
const maxFiringsPerStep = 10000

// DefaultScopePrefix names scopes per service when a role gives no prefix.
func DefaultScopePrefix(service string) string {
	switch service {
	case Collab:
		return "doc"
	case Game:
		return "match"
	default:
		return "room"
	}
}

// NewPlan derives the plan from s and s.Seed. It never fails: a validated
// scenario always has a plan.
func NewPlan(s *Scenario) *Plan {
	seed := uint64(s.Seed)
	rng := rand.New(rand.NewPCG(seed, 0x62696469_6b697400)) // "bidikit"
	p := &Plan{Seed: s.Seed}
	total := s.Clients()
	// Ramp order: a seeded permutation so roles interleave while connecting.
	order := rng.Perm(max(total, 1))
	idx := 0
	for ri, r := range s.Roles {
		prefix := r.ScopePrefix
		if prefix == "" {
			prefix = DefaultScopePrefix(s.Service)
		}
		nScopes := max(r.Scopes, 1)
		per := min(ScopesPerClient(r.Params), nScopes)
		for i := 0; i < r.Count; i++ {
			c := ClientPlan{
				Index:     idx,
				RoleIndex: ri,
				Role:      r.Name,
				User:      r.Name + "-" + strconv.Itoa(i),
				Seed:      rng.Uint64(),
			}
			// Scopes: per distinct scopes of the role's nScopes; the first
			// client of each scope is placed round-robin so that every scope
			// gets clients even when the role has few.
			first := i % nScopes
			c.Scopes = append(c.Scopes, prefix+"-"+strconv.Itoa(first))
			if per > 1 {
				for _, k := range rng.Perm(nScopes) {
					if len(c.Scopes) == per {
						break
					}
					if k != first {
						c.Scopes = append(c.Scopes, prefix+"-"+strconv.Itoa(k))
					}
				}
			}
			if total > 0 {
				c.StartAt = time.Duration(int64(s.Ramp) * int64(order[idx]) / int64(total))
			}
			c.StartAt += r.Start
			p.Clients = append(p.Clients, c)
			idx++
		}
	}
	for si, step := range s.Faults {
		until := step.Until
		if until <= 0 || until > s.Duration {
			until = s.Duration
		}
		for n, at := 0, step.At; n < maxFiringsPerStep; n++ {
			if n > 0 && (step.Every <= 0 || at >= until) {
				break
			}
			// Always draw, so that one step's probability does not shift
			// the choices of the steps after it.
			roll := rng.Float64()
			if roll < step.Probability {
				f := Firing{At: at, Step: si}
				if step.Scope == fault.Stream {
					f.Clients = choose(rng, active(s, p, step.Roles, at), step.Fraction, step.Count)
				}
				p.Firings = append(p.Firings, f)
			}
			at += step.Every
		}
	}
	sort.SliceStable(p.Firings, func(i, j int) bool {
		if p.Firings[i].At != p.Firings[j].At {
			return p.Firings[i].At < p.Firings[j].At
		}
		return p.Firings[i].Step < p.Firings[j].Step
	})
	return p
}

// active lists the clients of roles (all when empty) that are active at at:
// started, and not past their role's stop.
func active(s *Scenario, p *Plan, roles []string, at time.Duration) []int {
	var out []int
	for _, c := range p.Clients {
		if c.StartAt > at || (s.Roles[c.RoleIndex].Stop > 0 && at >= s.Roles[c.RoleIndex].Stop) {
			continue
		}
		if len(roles) == 0 {
			out = append(out, c.Index)
			continue
		}
		for _, r := range roles {
			if r == c.Role {
				out = append(out, c.Index)
				break
			}
		}
	}
	return out
}

// choose picks clients: round(fraction*n) (at least one when fraction > 0),
// else count, else all; the result is sorted.
func choose(rng *rand.Rand, candidates []int, fraction float64, count int) []int {
	n := len(candidates)
	k := n
	switch {
	case fraction > 0:
		k = max(int(math.Round(fraction*float64(n))), 1)
	case count > 0:
		k = count
	}
	k = min(k, n)
	out := make([]int, 0, k)
	for _, i := range rng.Perm(n)[:k] {
		out = append(out, candidates[i])
	}
	sort.Ints(out)
	return out
}

// Shard lists the clients (indices into Clients, sorted) that shard index of
// count runs, 0-based: index 0..count-1. The shares are disjoint and cover
// every client; each role's clients are dealt out over the shards in a
// seeded order, continuing round-robin from where the previous role ended,
// so every role (and the total) is balanced to within one client per shard.
// The same Seed gives the same partition for every index, so shards that
// run on different machines agree without talking to each other. A count
// below 1 or an index outside 0..count-1 gives nil.
//
// Shard draws from its own random stream: it never changes the plan's
// other choices.
func (p *Plan) Shard(index, count int) []int {
	if count < 1 || index < 0 || index >= count {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(p.Seed), 0x73686172_64730000)) // "shards"
	var out []int
	dealt := 0
	for lo := 0; lo < len(p.Clients); {
		hi := lo
		for hi < len(p.Clients) && p.Clients[hi].RoleIndex == p.Clients[lo].RoleIndex {
			hi++
		}
		for k, j := range rng.Perm(hi - lo) {
			if (dealt+k)%count == index {
				out = append(out, p.Clients[lo+j].Index)
			}
		}
		dealt += hi - lo
		lo = hi
	}
	sort.Ints(out)
	return out
}

// Mine reports, per client of the plan, whether shard index of count runs
// it (every client when count <= 1).
func (p *Plan) Mine(index, count int) []bool {
	mine := make([]bool, len(p.Clients))
	if count <= 1 {
		for i := range mine {
			mine[i] = true
		}
		return mine
	}
	for _, i := range p.Shard(index, count) {
		mine[i] = true
	}
	return mine
}
