package fault

import "context"

// malformed makes each target write one gRPC message whose bytes are not a
// valid protobuf message; the server should answer INVALID_ARGUMENT (or
// INTERNAL from the codec) and never panic. No parameters.
type malformed struct{}

func (malformed) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "malformed", targets, MalformedSender.SendMalformed)
}

func init() {
	Register(Spec{
		Name:    "malformed",
		Scope:   Stream,
		Summary: "write one gRPC message whose payload is not valid protobuf",
		New: func(decode func(any) error) (Fault, error) {
			if err := noParams(decode); err != nil {
				return nil, err
			}
			return malformed{}, nil
		},
	})
}

// MalformedSender is what the malformed fault needs of a target:
// SendMalformed writes bytes that are not a valid protobuf message as one
// gRPC message on the stream.
type MalformedSender interface {
	SendMalformed()
}
