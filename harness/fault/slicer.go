package fault

import (
	"context"
	"time"
)

// SlicerParams are the parameters of "slicer".
type SlicerParams struct {
	// AverageSize is the mean slice size in bytes (>= 1).
	AverageSize int `yaml:"average_size"`
	// SizeVariation varies each slice by up to +/- this many bytes
	// (0 <= size_variation < average_size).
	SizeVariation int `yaml:"size_variation"`
	// Delay is the pause between slices (>= 0, microsecond resolution).
	Delay time.Duration `yaml:"delay"`
	// Duration is how long the toxic stays (0 = until the end of the run).
	Duration time.Duration `yaml:"duration"`
	// Stream is both (default), upstream (client -> server) or downstream.
	Stream string `yaml:"stream"`
}

// slicer cuts every chunk through the proxy into small slices with a delay
// between them (toxiproxy "slicer" toxic), exercising framing code that
// must reassemble partial reads; no byte is lost.
type slicer struct{ t toxic }

func (f slicer) Inject(ctx context.Context, env Env, _ []Target) error {
	return f.t.inject(ctx, env)
}

func init() {
	Register(Spec{
		Name:    "slicer",
		Scope:   Connection,
		Summary: "slice data into ~`average_size` byte pieces `delay` apart for `duration` (0 = rest of run); whole proxy, fraction ignored",
		New: func(decode func(any) error) (Fault, error) {
			p := SlicerParams{AverageSize: 64, Stream: streamBoth}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.AverageSize <= 0 {
				return nil, paramErr("slicer", "average_size", "must be >= 1, got %d", p.AverageSize)
			}
			if p.SizeVariation < 0 || p.SizeVariation >= p.AverageSize {
				return nil, paramErr("slicer", "size_variation", "must be >= 0 and < average_size (%d), got %d", p.AverageSize, p.SizeVariation)
			}
			if p.Delay < 0 {
				return nil, paramErr("slicer", "delay", "must be >= 0, got %s", p.Delay)
			}
			if err := checkDuration("slicer", p.Duration); err != nil {
				return nil, err
			}
			dirs, err := directions("slicer", p.Stream)
			if err != nil {
				return nil, err
			}
			return slicer{toxic{
				fault: "slicer", typ: "slicer", streams: dirs, duration: p.Duration,
				attrs: map[string]int64{
					"average_size":   int64(p.AverageSize),
					"size_variation": int64(p.SizeVariation),
					"delay":          p.Delay.Microseconds(),
				},
			}}, nil
		},
	})
}
