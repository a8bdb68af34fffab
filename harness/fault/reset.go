package fault

import (
	"context"
	"time"
)

// ResetParams are the parameters of "reset".
type ResetParams struct {
	// Timeout is how long after the next data arrives the connection is
	// closed (whole ms, >= 0; 0 = at once).
	Timeout time.Duration `yaml:"timeout"`
	// Duration is how long the toxic stays (0 = until the end of the run).
	Duration time.Duration `yaml:"duration"`
	// Stream is both (default), upstream (client -> server) or downstream.
	Stream string `yaml:"stream"`
}

// reset closes every proxied connection on which data flows (toxiproxy
// "reset_peer" toxic). Connections opened while the toxic is present get
// SO_LINGER 0, so the close is a TCP RST; connections that were already
// open see a plain close.
type reset struct{ t toxic }

func (f reset) Inject(ctx context.Context, env Env, _ []Target) error {
	return f.t.inject(ctx, env)
}

func init() {
	Register(Spec{
		Name:    "reset",
		Scope:   Connection,
		Summary: "reset every proxied connection `timeout` after data flows, for `duration` (0 = rest of run); whole proxy, fraction ignored",
		New: func(decode func(any) error) (Fault, error) {
			p := ResetParams{Stream: streamBoth}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Timeout < 0 {
				return nil, paramErr("reset", "timeout", "must be >= 0, got %s", p.Timeout)
			}
			if err := checkDuration("reset", p.Duration); err != nil {
				return nil, err
			}
			dirs, err := directions("reset", p.Stream)
			if err != nil {
				return nil, err
			}
			return reset{toxic{
				fault: "reset", typ: "reset_peer", streams: dirs, duration: p.Duration,
				attrs: map[string]int64{"timeout": p.Timeout.Milliseconds()},
			}}, nil
		},
	})
}
