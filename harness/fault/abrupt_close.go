package fault

import "context"

// abruptClose closes each target's TCP connection without GOAWAY or
// RST_STREAM, as a vanished peer would. No parameters.
type abruptClose struct{}

func (abruptClose) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "abrupt-close", targets, AbruptCloser.AbruptClose)
}

func init() {
	Register(Spec{
		Name:    "abrupt-close",
		Scope:   Stream,
		Summary: "close the client's TCP connection without any goodbye (no GOAWAY, no RST_STREAM)",
		New: func(decode func(any) error) (Fault, error) {
			if err := noParams(decode); err != nil {
				return nil, err
			}
			return abruptClose{}, nil
		},
	})
}

// AbruptCloser is what the abrupt-close fault needs of a target: AbruptClose
// closes the client's TCP connection without any goodbye (no GOAWAY, no
// RST_STREAM).
type AbruptCloser interface {
	AbruptClose()
}
