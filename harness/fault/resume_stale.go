package fault

import "context"

// ResumeStaleParams are the parameters of "resume-stale".
type ResumeStaleParams struct {
	// Back is how many positions before its last seen one the client
	// resumes from; 0 (the default) resumes from the very beginning.
	Back uint64 `yaml:"back"`
}

// resumeStale makes each target reconnect and rejoin from a stale position,
// so the server must replay (or say the resume was incomplete).
type resumeStale struct{ p ResumeStaleParams }

func (f resumeStale) Inject(ctx context.Context, _ Env, targets []Target) error {
	return forEach(ctx, "resume-stale", targets, func(c StaleResumer) { c.ResumeStale(f.p.Back) })
}

func init() {
	Register(Spec{
		Name:    "resume-stale",
		Scope:   Stream,
		Summary: "reconnect and resume `back` positions before the last seen one (0 = from the very beginning)",
		New: func(decode func(any) error) (Fault, error) {
			var p ResumeStaleParams
			if err := decode(&p); err != nil {
				return nil, err
			}
			return resumeStale{p}, nil
		},
	})
}

// StaleResumer is what the resume-stale fault needs of a target: ResumeStale
// reconnects and rejoins from a position older than its last seen one (stale
// by back positions; 0 = from the very beginning).
type StaleResumer interface {
	ResumeStale(back uint64)
}
