package fault

import "context"

// maxBurst bounds "burst" so a typo cannot exhaust the harness's memory.
const maxBurst = 1_000_000

// BurstParams are the parameters of "burst".
type BurstParams struct {
	// Count is how many messages each client sends back to back (1..1e6).
	Count int `yaml:"count"`
}

// burst makes each target send Count messages back to back, ignoring its
// pacing.
type burst struct{ p BurstParams }

func (f burst) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "burst", targets, func(c Burster) { c.Burst(f.p.Count) })
}

func init() {
	Register(Spec{
		Name:    "burst",
		Scope:   Stream,
		Summary: "send `count` messages (default 100) back to back, ignoring pacing",
		New: func(decode func(any) error) (Fault, error) {
			p := BurstParams{Count: 100}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Count <= 0 || p.Count > maxBurst {
				return nil, paramErr("burst", "count", "must be between 1 and %d, got %d", maxBurst, p.Count)
			}
			return burst{p}, nil
		},
	})
}

// Burster is what the burst fault needs of a target: Burst sends n messages
// back to back, ignoring pacing.
type Burster interface {
	Burst(n int)
}
