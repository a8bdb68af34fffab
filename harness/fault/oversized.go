package fault

import "context"

// maxOversized bounds "oversized" (1 GiB): each target allocates the payload.
const maxOversized = 1 << 30

// OversizedParams are the parameters of "oversized".
type OversizedParams struct {
	// Bytes is the payload size of the one message sent (1..1 GiB; default
	// 8 MiB, twice grpc-go's default 4 MiB receive limit).
	Bytes int `yaml:"bytes"`
}

// oversized makes each target send one message with a Bytes-long payload.
type oversized struct{ p OversizedParams }

func (f oversized) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "oversized", targets, func(c OversizedSender) { c.SendOversized(f.p.Bytes) })
}

func init() {
	Register(Spec{
		Name:    "oversized",
		Scope:   Stream,
		Summary: "send one message whose payload is `bytes` long (default 8 MiB)",
		New: func(decode func(any) error) (Fault, error) {
			p := OversizedParams{Bytes: 8 << 20}
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.Bytes <= 0 || p.Bytes > maxOversized {
				return nil, paramErr("oversized", "bytes", "must be between 1 and %d, got %d", maxOversized, p.Bytes)
			}
			return oversized{p}, nil
		},
	})
}

// OversizedSender is what the oversized fault needs of a target:
// SendOversized sends one message whose payload is bytes long.
type OversizedSender interface {
	SendOversized(bytes int)
}
