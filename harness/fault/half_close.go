package fault

import "context"

// halfClose makes each target call CloseSend and keep reading until the
// server ends the stream. No parameters.
type halfClose struct{}

func (halfClose) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "half-close", targets, HalfCloser.HalfClose)
}

func init() {
	Register(Spec{
		Name:    "half-close",
		Scope:   Stream,
		Summary: "CloseSend, then keep reading until the server ends the stream",
		New: func(decode func(any) error) (Fault, error) {
			if err := noParams(decode); err != nil {
				return nil, err
			}
			return halfClose{}, nil
		},
	})
}

// HalfCloser is what the half-close fault needs of a target: HalfClose calls
// CloseSend and keeps reading until the server ends the stream.
type HalfCloser interface {
	HalfClose()
}
