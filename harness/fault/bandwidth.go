package fault

import (
	"context"
	"time"
)

// BandwidthParams are the parameters of "bandwidth".
type BandwidthParams struct {
	// Rate is the limit in KB/s per connection and direction (>= 1).
	Rate int64 `yaml:"rate"`
	// Duration is how long the toxic stays (0 = until the end of the run).
	Duration time.Duration `yaml:"duration"`
	// Stream is both (default), upstream (client -> server) or downstream.
	Stream string `yaml:"stream"`
}

// bandwidth limits each proxied connection's throughput (toxiproxy
// "bandwidth" toxic); no byte is lost.
type bandwidth struct{ t toxic }

func (f bandwidth) Inject(ctx context.Context, env Env, _ []Target) error {
	return f.t.inject(ctx, env)
}

func init() {
	Register(Spec{
		Name:    "bandwidth",
		Scope:   Connection,
		Summary: "limit every proxied connection to `rate` KB/s for `duration` (0 = rest of run); whole proxy, fraction ignored",
		New: func(decode func(any) error) (Fault, error) {
			p := BandwidthParams{Stream: streamBoth}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Rate <= 0 {
				return nil, paramErr("bandwidth", "rate", "must be >= 1 (KB/s), got %d", p.Rate)
			}
			if err := checkDuration("bandwidth", p.Duration); err != nil {
				return nil, err
			}
			dirs, err := directions("bandwidth", p.Stream)
			if err != nil {
				return nil, err
			}
			return bandwidth{toxic{
				fault: "bandwidth", typ: "bandwidth", streams: dirs, duration: p.Duration,
				attrs: map[string]int64{"rate": p.Rate},
			}}, nil
		},
	})
}
