package engine

import "github.com/bidikit/bidikit/harness/scenario"

// SilentParams: opens a stream and never sends on it. It has no
// parameters; the role's count is how many streams are held.
type SilentParams struct{}

// silentDriver is the service's own driver (what it reads and what that
// means) with nothing sent: no join, open or play, no paced action. The
// stream stays open, with no membership, until the client's end, when the
// engine half-closes it as for any client.
type silentDriver struct{ Driver }

func (silentDriver) Start(Stream) error    { return nil }
func (silentDriver) Act(Stream, int) error { return nil }

func init() {
	registerBehaviour(scenario.Behaviour{Name: "silent", Attack: true,
		Summary: "opens a stream and never sends on it: holds a server stream with no membership (stream exhaustion at the gRPC level)"},
		func() *SilentParams { return &SilentParams{} },
		func(c *vclient, _ *SilentParams) error {
			d, err := serviceDriver(c, 1, false)
			if err != nil {
				return err
			}
			c.d = silentDriver{d}
			return nil
		}, nil)
}
