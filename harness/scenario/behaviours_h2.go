package scenario

import "github.com/bidikit/bidikit/harness/h2attack"

// The HTTP/2 attacks of harness/h2attack are attack behaviours for any
// service: each client of such a role runs the attack (with its params'
// connections) from the role's start to its stop, on raw HTTP/2
// connections of its own next to the gRPC clients. The role's rate is the
// attack's pace (frames or streams per second per connection); its
// default is the attack's.
func init() {
	for name, a := range h2attack.Attacks {
		Behaviours[name] = Behaviour{Name: name, Attack: true, Summary: a.Summary, DefaultRate: a.Params().Pace(),
			Params: func() any { return a.Params() }}
	}
}
