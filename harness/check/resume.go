package check

import (
	"context"
	"fmt"

	"github.com/bidikit/bidikit/harness/event"
)

// resume is the "resume-complete" checker: a join with a resume position
// must replay exactly the missed range (resume_after+1 .. head) before going
// live, or say it could not (Complete=false). Claiming completeness while
// skipping part of the range, or replaying from elsewhere, is a violation;
// so is saying incomplete while replaying from the start of the range. An
// incomplete resume that names where its replay starts (replay_from, the
// oldest retained seq) is held to replaying from there to the head;
// the replay may arrive in any order ("delivery-order" judges order). A
// replay still open when its member leaves, or when the server ends its
// stream cleanly, is judged then; one cut short by a broken stream or by the
// client's own CloseSend is not (the stream's Disconnect precedes the Leaves
// it implies, so the break is known first). It passes only on evidence: at
// least one replay judged; resumes at the head, and incomplete ones that
// replay nothing, prove nothing (a server that never replays is not
// measurable, never a pass).
type resume struct {
	open    map[memberKey]*resumeState
	resumes int // joins with a resume position
	withGap int // of those, with a non-empty missed range
	judged  int // replays judged (completed, or ended while claiming complete)
	honest  int // incomplete resumes that said so
	partial int // of those, replaying the retained part (held to it: judged when done)
	// unread counts open replays dropped because their client received a
	// message it could not read (it may be one of the replay's).
	unread    int
	unreadWhy unreadNote
	v         Verdict
}

type resumeState struct {
	client string
	after  uint64 // the replay owed is after+1 .. head
	head   uint64
	// from is where an incomplete resume said its replay starts (0: the
	// resume claimed completeness).
	from uint64
	got  seqSet
	at   event.Event
}

func init() {
	Register("resume-complete", func(decode func(any) error) (Checker, error) {
		if err := noParams(decode); err != nil {
			return nil, err
		}
		return &resume{open: map[memberKey]*resumeState{}, v: Verdict{Name: "resume-complete"}}, nil
	})
}

// finish judges k's open replay: every seq of the missed range must have
// arrived.
func (r *resume) finish(k memberKey) {
	s := r.open[k]
	if s == nil {
		return
	}
	delete(r.open, k)
	r.judged++
	s.got.holes(s.after+1, s.head, func(from, to uint64) bool {
		detail := fmt.Sprintf("resume after seq %d claimed complete but seqs %d..%d of the missed range never arrived (head %d)", s.after, from, to, s.head)
		if s.from != 0 {
			detail = fmt.Sprintf("resume after seq %d said incomplete, replaying from seq %d, but seqs %d..%d of that replay never arrived (head %d)",
				s.at.ResumeAfter, s.from, from, to, s.head)
		}
		r.v.Add(Evidence{Scope: k.scope, Seq: from, Client: s.client, At: s.at.At, Detail: detail})
		return false // one piece of evidence per replay
	})
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
		if e.Seq <= e.ResumeAfter {
			return // nothing missed: proves nothing either way
		}
		r.withGap++
		who := clientName(e)
		if !e.Complete {
			switch {
			case e.ReplayFrom != 0 && e.ReplayFrom <= e.ResumeAfter+1:
				r.v.Add(Evidence{Scope: e.Scope, Seq: e.ReplayFrom, Client: who, At: e.At,
					Detail: fmt.Sprintf("resume after seq %d said incomplete although replay starts at seq %d", e.ResumeAfter, e.ReplayFrom)})
			case e.ReplayFrom != 0 && e.ReplayFrom <= e.Seq:
				// The retained part: owed from replay_from to the head.
				r.honest++
				r.partial++
				r.open[k] = &resumeState{client: who, after: e.ReplayFrom - 1, head: e.Seq, from: e.ReplayFrom, at: *e}
			default:
				r.honest++ // nothing replayed, and said so
			}
			return
		}
		if e.ReplayFrom != e.ResumeAfter+1 {
			r.judged++
			r.v.Add(Evidence{Scope: e.Scope, Seq: e.ReplayFrom, Client: who, At: e.At,
				Detail: fmt.Sprintf("resume after seq %d claimed complete but replay starts at seq %d (head %d)", e.ResumeAfter, e.ReplayFrom, e.Seq)})
			return
		}
		r.open[k] = &resumeState{client: who, after: e.ResumeAfter, head: e.Seq, at: *e}
	case event.Deliver:
		s := r.open[k]
		if s == nil || e.Seq <= s.after || e.Seq > s.head {
			return
		}
		s.got.add(e.Seq)
		if len(s.got.iv) == 1 && s.got.iv[0] == [2]uint64{s.after + 1, s.head} {
			delete(r.open, k)
			r.judged++
		}
	case event.Unread:
		r.unreadWhy.see(e)
		for mk := range r.open {
			if mk.client == e.Client {
				delete(r.open, mk)
				r.unread++
			}
		}
	case event.Leave:
		r.finish(k)
	case event.Disconnect:
		// A stream the server ended cleanly mid-replay is judged; one that
		// broke, or that the client ended first (CloseSend: Latency is the
		// time from it to the end), is not the server's lie: a server may
		// stop feeding a stream whose client said it is done. Its
		// unfinished replays are dropped.
		for mk := range r.open {
			if mk.client != e.Client {
				continue
			}
			if e.Code == 0 && e.Latency == 0 {
				r.finish(mk)
			} else {
				delete(r.open, mk)
			}
		}
	}
}

func (r *resume) Verdict(context.Context, Env) Verdict {
	keys := make([]memberKey, 0, len(r.open))
	for k := range r.open {
		keys = append(keys, k)
	}
	sortMembers(keys)
	for _, k := range keys {
		r.finish(k)
	}
	if r.v.Violations == 0 && r.judged == 0 {
		if r.resumes == 0 {
			return notMeasurable(&r.v, "no resumes observed")
		}
		if r.withGap == 0 {
			return notMeasurable(&r.v, "%d resumes, none had missed messages to replay (each resumed at the room's head)", r.resumes)
		}
		return notMeasurable(&r.v, "%d resumes, no replay judged: of the %d with missed messages to replay, %d said they could not and replayed nothing, "+
			"%d not judged: their client got server messages it could not read%s; the rest were cut short by a broken stream or the client's own CloseSend",
			r.resumes, r.withGap, r.honest-r.partial, r.unread, r.unreadWhy)
	}
	summarise(&r.v, fmt.Sprintf("%d resumes: %d replays judged complete (%d of them the retained part of a range the server said it could not fully replay), "+
		"%d said they could not replay any of it, %d had nothing to replay",
		r.resumes, r.judged-r.v.Violations, r.partial, r.honest-r.partial, r.resumes-r.withGap),
		"%d resumes whose replay did not match what their Joined said", r.v.Violations)
	if r.unread > 0 {
		r.v.Summary += fmt.Sprintf("; %d replay(s) not judged: their client got server messages it could not read (unread events)%s", r.unread, r.unreadWhy)
	}
	return r.v
}
