package fault

import (
	"context"
	"time"
)

// BlackholeParams are the parameters of "blackhole".
type BlackholeParams struct {
	// Timeout, when > 0, closes each connection that long after the toxic
	// reaches it (whole ms); 0 (the default) keeps connections open while
	// every byte vanishes, which only keepalive can detect.
	Timeout time.Duration `yaml:"timeout"`
	// Duration is how long the toxic stays (0 = until the end of the run).
	Duration time.Duration `yaml:"duration"`
	// Stream is both (default), upstream (client -> server) or downstream.
	Stream string `yaml:"stream"`
}

// blackhole drops every byte through the proxy (toxiproxy "timeout" toxic).
// When the toxic is removed, toxiproxy closes the connections it held, so
// existing connections end and new ones work normally.
type blackhole struct{ t toxic }

func (f blackhole) Inject(ctx context.Context, env Env, _ []Target) error {
	return f.t.inject(ctx, env)
}

func init() {
	Register(Spec{
		Name:    "blackhole",
		Scope:   Connection,
		Summary: "drop every byte through the proxy (close after `timeout` if > 0) for `duration` (0 = rest of run); whole proxy, fraction ignored",
		New: func(decode func(any) error) (Fault, error) {
			p := BlackholeParams{Stream: streamBoth}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Timeout < 0 {
				return nil, paramErr("blackhole", "timeout", "must be >= 0 (0 = hold connections open), got %s", p.Timeout)
			}
			if p.Timeout > 0 && p.Timeout < time.Millisecond {
				return nil, paramErr("blackhole", "timeout", "must be 0 or >= 1ms, got %s", p.Timeout)
			}
			if err := checkDuration("blackhole", p.Duration); err != nil {
				return nil, err
			}
			dirs, err := directions("blackhole", p.Stream)
			if err != nil {
				return nil, err
			}
			return blackhole{toxic{
				fault: "blackhole", typ: "timeout", streams: dirs, duration: p.Duration,
				attrs: map[string]int64{"timeout": p.Timeout.Milliseconds()},
			}}, nil
		},
	})
}
