package fault

import "context"

// stopReading makes each target stop receiving for the rest of the run; its
// stream stays open and unread so the server's send queue fills. No
// parameters.
type stopReading struct{}

func (stopReading) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "stop-reading", targets, ReadStopper.StopReading)
}

func init() {
	Register(Spec{
		Name:    "stop-reading",
		Scope:   Stream,
		Summary: "stop receiving for the rest of the run, leaving the stream open so the server's send queue fills",
		New: func(decode func(any) error) (Fault, error) {
			if err := noParams(decode); err != nil {
				return nil, err
			}
			return stopReading{}, nil
		},
	})
}

// ReadStopper is what the stop-reading fault needs of a target: StopReading
// stops receiving for the rest of the run (the stream stays open and unread,
// so the server's send queue fills).
type ReadStopper interface {
	StopReading()
}
