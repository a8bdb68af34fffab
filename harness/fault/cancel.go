package fault

import "context"

// cancelStream cancels each target's stream context mid-stream (the server
// sees RST_STREAM with CANCEL). No parameters.
type cancelStream struct{}

func (cancelStream) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "cancel", targets, StreamCanceller.CancelStream)
}

func init() {
	Register(Spec{
		Name:    "cancel",
		Scope:   Stream,
		Summary: "cancel the stream's context mid-stream (RST_STREAM CANCEL); the client reconnects if its behaviour says so",
		New: func(decode func(any) error) (Fault, error) {
			if err := noParams(decode); err != nil {
				return nil, err
			}
			return cancelStream{}, nil
		},
	})
}

// StreamCanceller is what the cancel fault needs of a target: CancelStream
// cancels the stream's context mid-stream (RST_STREAM with CANCEL); the
// client reconnects if its behaviour says so.
type StreamCanceller interface {
	CancelStream()
}
