package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// resume is the "resume-complete" checker: a join with a resume position
// must replay exactly the missed range (resume_after+1 .. head) before going
// live, or say it could not (Complete=false). Claiming completeness while
// skipping part of the range, or replaying from elsewhere, is a violation.
// A replay still open when its member leaves, or when its stream ends
// cleanly, is judged then; one cut short by a broken stream is not (the
// stream's Disconnect precedes the Leaves it implies, so the break is known
// first).
type resume struct {
	open    map[memberKey]*resumeState
	resumes int
	v       Verdict
}

type resumeState struct {
	client     string
	after      uint64
	head       uint64
	complete   bool
	replayFrom uint64
	next       uint64 // next seq expected within the replayed range
	at         event.Event
}

func init() {
	Register("resume-complete", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &resume{open: map[memberKey]*resumeState{}, v: Verdict{Name: "resume-complete"}}, nil
	})
}

func (r *resume) finish(k memberKey) {
	s := r.open[k]
	if s == nil {
		return
	}
	delete(r.open, k)
	r.judge(k, s)
}

func (r *resume) judge(k memberKey, s *resumeState) {
	if s.complete && s.next <= s.head {
		r.v.Add(Evidence{Scope: k.scope, Seq: s.next, Client: s.client, At: s.at.At,
			Detail: fmt.Sprintf("resume after seq %d claimed complete but replay stopped before seq %d (head was %d)", s.after, s.next, s.head)})
	}
}

func (r *resume) Observe(e *event.Event) {
	k := memberKey{e.Client, e.Scope}
	switch e.Kind {
	case event.Join:
		r.finish(k)
		if !e.HasResume {
			return
		}
		r.resumes++
		s := &resumeState{client: clientName(e), after: e.ResumeAfter, head: e.Seq, complete: e.Complete,
			replayFrom: e.ReplayFrom, next: e.ResumeAfter + 1, at: *e}
		if s.complete && e.Seq > e.ResumeAfter && e.ReplayFrom != e.ResumeAfter+1 {
			r.v.Add(Evidence{Scope: e.Scope, Seq: e.ReplayFrom, Client: s.client, At: e.At,
				Detail: fmt.Sprintf("resume after seq %d claimed complete but replay starts at seq %d", e.ResumeAfter, e.ReplayFrom)})
			return
		}
		if !s.complete {
			if e.ReplayFrom != 0 && e.ReplayFrom <= e.ResumeAfter+1 {
				r.v.Add(Evidence{Scope: e.Scope, Seq: e.ReplayFrom, Client: s.client, At: e.At,
					Detail: fmt.Sprintf("resume after seq %d said incomplete although replay starts at seq %d", e.ResumeAfter, e.ReplayFrom)})
			}
			return
		}
		r.open[k] = s
	case event.Deliver:
		s := r.open[k]
		if s == nil {
			return
		}
		if e.Seq == s.next {
			s.next++
		} else if e.Seq > s.next && e.Seq <= s.head {
			r.v.Add(Evidence{Scope: e.Scope, Seq: s.next, Client: s.client, At: e.At,
				Detail: fmt.Sprintf("resume after seq %d skipped seqs %d..%d of the missed range (head %d)", s.after, s.next, e.Seq-1, s.head)})
			s.next = e.Seq + 1
		}
		if s.next > s.head {
			delete(r.open, k)
		}
	case event.Leave:
		r.finish(k)
	case event.Disconnect:
		// A stream that ended cleanly mid-replay is judged; one that broke
		// is not the server's lie: its unfinished replays are dropped.
		for mk := range r.open {
			if mk.client != e.Client {
				continue
			}
			if e.Code == 0 {
				r.finish(mk)
			} else {
				delete(r.open, mk)
			}
		}
	}
}

func (r *resume) Verdict(context.Context, Env) Verdict {
	for k := range r.open {
		r.finish(k)
	}
	if r.resumes == 0 {
		r.v.Status = NotMeasurable
		r.v.Summary = "no resumes observed"
		return r.v
	}
	summarise(&r.v, fmt.Sprintf("%d resumes replayed exactly the missed range or said they could not", r.resumes),
		"%d resumes incomplete without saying so", r.v.Violations)
	return r.v
}
