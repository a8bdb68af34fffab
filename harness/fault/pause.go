package fault

import (
	"context"
	"time"
)

// PauseParams are the parameters of "pause".
type PauseParams struct {
	// Duration is how long the client neither sends nor receives (> 0).
	Duration time.Duration `yaml:"duration"`
}

// pause stops both sending and receiving on each target for a while; the
// client resumes by itself (Client.Pause returns at once).
type pause struct{ p PauseParams }

func (f pause) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "pause", targets, func(c Pauser) { c.Pause(f.p.Duration) })
}

func init() {
	Register(Spec{
		Name:    "pause",
		Scope:   Stream,
		Summary: "stop sending and receiving for `duration` (default 5s), then carry on",
		New: func(decode func(any) error) (Fault, error) {
			p := PauseParams{Duration: 5 * time.Second}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Duration <= 0 {
				return nil, paramErr("pause", "duration", "must be > 0, got %s", p.Duration)
			}
			return pause{p}, nil
		},
	})
}

// Pauser is what the pause fault needs of a target: Pause stops both sending
// and receiving for d.
type Pauser interface {
	Pause(d time.Duration)
}
