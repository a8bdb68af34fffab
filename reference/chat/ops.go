package chat

import (
	"fmt"
	"time"

	"google.golang.org/grpc/codes"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference/validate"
)

func validName(field, v string) error { return validate.Name(field, v) }
func validID(field, v string) error   { return validate.ID(field, v, maxClientMsgIDBytes) }
func validBody(field, v string, max int) error {
	return validate.Text(field, v, max, true)
}

// join adds ss to the room called name and queues Joined (and, for a resume,
// a replay job) to it. The membership is registered, the head read and the
// job queued under the room's lock, so the replay (resume_after, head] and
// the live messages (> head, queued behind the job) meet without gap or
// overlap. Returns nil when the Join failed (an
// Error event was queued).
func (s *Service) join(ss *session, name string, resumeAfter *uint64) *membership {
	r := s.rooms.acquire(name)
	h, err := s.headFor(r)
	if err != nil {
		s.rooms.release(r)
		ss.reject(codes.Unavailable, "join.room", name, "",
			fmt.Sprintf("room %q could not be read from storage: %v", name, err))
		return nil
	}
	m := &membership{sess: ss, room: r}
	joined := &chatv1.Joined{Room: name, ResumeComplete: true, OldestRetainedSeq: h.Oldest}
	var job *replayJob

	r.mu.Lock()
	head := r.committed
	joined.HeadSeq = head
	if resumeAfter != nil && *resumeAfter > head {
		// This instance's feed lags the position the member saw on another
		// instance (a shared log): do not deliver what it saw again.
		m.skip = *resumeAfter
	}
	if resumeAfter != nil && *resumeAfter < head {
		from := *resumeAfter + 1
		if h.Oldest == 0 || from < h.Oldest {
			joined.ResumeComplete = false
			from = h.Oldest
			if from == 0 {
				from = head + 1
			}
		}
		if from <= head {
			joined.ReplayFrom = from
			job = &replayJob{m: m, from: from, to: head}
		}
	}
	r.addMember(m)
	joined.Members = r.memberList()
	ss.pushEvent(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Joined{Joined: joined}})
	if job != nil {
		ss.push(item{job: job}, controlItemBytes)
	}
	r.mu.Unlock()
	s.mMembers.Inc()
	return m
}

// leave removes m from its room; with confirm, Left is queued to m's stream.
func (s *Service) leave(m *membership, confirm bool) {
	r := m.room
	r.mu.Lock()
	r.removeMember(m)
	if confirm {
		m.sess.pushEvent(&chatv1.ServerEvent{Event: &chatv1.ServerEvent_Left{Left: &chatv1.Left{Room: r.name}}})
	}
	r.mu.Unlock()
	s.rooms.release(r)
	s.mMembers.Dec()
}

// typing relays an indicator to the other users' streams in m's room, at
// most one per user per room per TypingInterval; extra ones are dropped.
func (s *Service) typing(m *membership, active bool) {
	r, user := m.room, m.sess.user
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.typing[user]; ok && now.Sub(last) < s.cfg.TypingInterval {
		return
	}
	r.typing[user] = now
	ev := &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Typing{Typing: &chatv1.TypingNotice{
		Room: r.name, User: user, Active: active}}}
	r.broadcastEvent(ev, func(o *membership) bool { return o.sess.user == user })
}

func ackEvent(room, id string, seq uint64, dup bool, nanos int64) *chatv1.ServerEvent {
	return &chatv1.ServerEvent{Event: &chatv1.ServerEvent_Ack{Ack: &chatv1.Ack{
		Room: room, ClientMsgId: id, Seq: seq, Duplicate: dup, ServerUnixNanos: nanos}}}
}
