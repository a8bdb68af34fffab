package fault

import (
	"context"
	"time"
)

// LatencyParams are the parameters of "latency".
type LatencyParams struct {
	// Latency is added to every chunk of data in each chosen direction
	// (whole milliseconds, >= 1ms). With stream "both" a request/response
	// round trip gains about twice Latency.
	Latency time.Duration `yaml:"latency"`
	// Jitter varies each delay by up to +/- Jitter (whole ms, >= 0).
	Jitter time.Duration `yaml:"jitter"`
	// Duration is how long the toxic stays (0 = until the end of the run).
	Duration time.Duration `yaml:"duration"`
	// Stream is both (default), upstream (client -> server) or downstream.
	Stream string `yaml:"stream"`
}

// latency delays every byte through the proxy (toxiproxy "latency" toxic).
type latency struct{ t toxic }

func (f latency) Inject(ctx context.Context, env Env, _ []Target) error {
	return f.t.inject(ctx, env)
}

func init() {
	Register(Spec{
		Name:    "latency",
		Scope:   Connection,
		Summary: "delay every byte through the proxy by `latency` +/- `jitter` for `duration` (0 = rest of run); whole proxy, fraction ignored",
		New: func(decode func(any) error) (Fault, error) {
			p := LatencyParams{Latency: 100 * time.Millisecond, Stream: streamBoth}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Latency < time.Millisecond {
				return nil, paramErr("latency", "latency", "must be >= 1ms, got %s", p.Latency)
			}
			if p.Jitter < 0 {
				return nil, paramErr("latency", "jitter", "must be >= 0, got %s", p.Jitter)
			}
			if err := checkDuration("latency", p.Duration); err != nil {
				return nil, err
			}
			dirs, err := directions("latency", p.Stream)
			if err != nil {
				return nil, err
			}
			return latency{toxic{
				fault: "latency", typ: "latency", streams: dirs, duration: p.Duration,
				attrs: map[string]int64{"latency": p.Latency.Milliseconds(), "jitter": p.Jitter.Milliseconds()},
			}}, nil
		},
	})
}
