package chatclient

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// Session is one user's rooms across the streams of a client that
// reconnects: the position to resume each room from, the current stream's
// joins, and the unacknowledged sends of each room in sender order. It
// decides what to send and when; the caller writes it to the stream and
// tells the Session what came back. mu guards everything, so a send loop
// and a receive loop may share a Session. wake is called when the send
// loop has work (Due), sometimes with mu held or from a timer's goroutine:
// it must not block nor call the Session.
//
// Order of a sender's messages (see chat.proto's Error): a room's Sends go
// out only once the room is joined on the current stream (its Joined came);
// until then, and while a resend waits for its back-off, new messages wait
// behind the unacknowledged ones. A new stream, or an UNAVAILABLE answer to
// a Send, sends the room's unacknowledged messages again from the oldest, in
// sender order, before any new one; the server acks those it had stored as
// duplicates. The oldest goes first, alone (a probe): the others follow its
// answer, so a server still electing a stream leader refuses one message per
// attempt rather than every one waiting.
type Session struct {
	rooms      []string
	maxPending int
	wake       func()

	mu        sync.Mutex
	pos       map[string]uint64 // highest seq seen per room (after a first join)
	hasPos    map[string]bool
	asked     map[string]uint64 // resume_after asked on the current stream
	joined    map[string]bool
	pending   map[string]*Pending
	state     map[string]*room
	staleBack uint64 // positions to go back on the next join (+1: 0 means none)
}

// Pending is a numbered message from its first send to its answer (an
// Ack, or an Error refusing it for good).
type Pending struct {
	Room      string
	ID        string
	SenderSeq uint64
	Body      string
	// At is when it was numbered: the base of its ack latency and its
	// client_sent_unix_nanos.
	At time.Time
}

// Resend back-off after an UNAVAILABLE answer (a Join or a Send the server
// could not serve now, e.g. while a clustered server's stream leader is
// elected): per room, doubling from MinRetry up to MaxRetry, reset by the
// room's next Joined or Ack.
const (
	MinRetry = 100 * time.Millisecond
	MaxRetry = 2 * time.Second
)

// roomPhase is where a room stands on the current stream.
type roomPhase int

const (
	roomJoining roomPhase = iota // Join sent, no answer yet
	roomReady                    // joined: Sends go out
	roomRejoin                   // the Join was refused for now: send it again at due
	roomResend                   // resend from the oldest at due
	roomProbe                    // the oldest went out again alone: the others wait for its answer
)

// room is one room's sending state: queue (unacknowledged messages, in
// sender order) outlives streams; phase, sent, join and due are per stream.
type room struct {
	queue   []*Pending
	sent    int // queue[:sent] went out on the current stream since the last resend
	phase   roomPhase
	join    *chatv1.ClientEvent // the current stream's Join, sent again on roomRejoin
	due     time.Time
	backoff time.Duration
}

// NewSession is the session of a client of rooms that remembers at most
// maxPending unacknowledged sends (more go out untracked: no resend, no
// ack latency); wake is called when Due has something (see Session).
func NewSession(rooms []string, maxPending int, wake func()) *Session {
	return &Session{rooms: rooms, maxPending: maxPending, wake: wake,
		pos: map[string]uint64{}, hasPos: map[string]bool{}, asked: map[string]uint64{},
		joined: map[string]bool{}, pending: map[string]*Pending{}, state: map[string]*room{}}
}

// Stale moves the positions back by back (0: from the beginning) for the
// next Start only (the resume-stale fault).
func (s *Session) Stale(back uint64) {
	s.mu.Lock()
	s.staleBack = back + 1
	s.mu.Unlock()
}

// room returns name's sending state. Caller holds s.mu.
func (s *Session) room(name string) *room {
	rs := s.state[name]
	if rs == nil {
		rs = &room{}
		s.state[name] = rs
	}
	return rs
}

// Start returns the Joins of a new stream, one per room in order: from the
// live head for a room never joined, else resuming from its last seen
// position. The rooms' unacknowledged messages go out again once each
// room's Joined has come (Due).
func (s *Session) Start() []*chatv1.ClientEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	joins := make([]*chatv1.ClientEvent, 0, len(s.rooms))
	clear(s.asked)
	for _, name := range s.rooms {
		var resume *uint64
		if s.hasPos[name] {
			after := s.pos[name]
			if s.staleBack > 0 {
				if back := s.staleBack - 1; back == 0 || back >= after {
					after = 0
				} else {
					after -= back
				}
			}
			resume = &after
			s.asked[name] = after
		}
		rs := s.room(name)
		rs.phase, rs.sent, rs.join = roomJoining, 0, Join(name, resume)
		joins = append(joins, rs.join)
	}
	s.staleBack = 0
	return joins
}

// Ready reports whether room is joined on the current stream and not
// waiting to resend (its Sends go out at once).
func (s *Session) Ready(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.room(name).phase == roomReady
}

// Joined records j, the answer to a Join on the current stream: the
// room's position (the asked resume position, else the head when it is
// ahead of what was seen) and the resend of its unacknowledged messages
// (Due, after wake). It returns the resume position asked on this stream
// (asked false: the Join was from the live head).
func (s *Session) Joined(j *chatv1.Joined) (after uint64, asked bool) {
	s.mu.Lock()
	after, asked = s.asked[j.Room]
	s.joined[j.Room] = true
	if !asked && (!s.hasPos[j.Room] || s.pos[j.Room] < j.HeadSeq) {
		s.pos[j.Room] = j.HeadSeq
	}
	if asked {
		s.pos[j.Room] = after
	}
	s.hasPos[j.Room] = true
	if rs := s.state[j.Room]; rs != nil {
		// Unacknowledged messages go out again, the oldest first (Due).
		rs.phase, rs.due, rs.backoff = roomResend, time.Now(), 0
	}
	s.mu.Unlock()
	s.wake()
	return after, asked
}

// Delivered records m's seq as its room's position.
func (s *Session) Delivered(m *chatv1.Message) {
	s.mu.Lock()
	if m.Seq > s.pos[m.Room] {
		s.pos[m.Room] = m.Seq
	}
	s.mu.Unlock()
}

// Ended forgets the current stream's joins (it has ended) and returns the
// rooms it had joined, sorted.
func (s *Session) Ended() []string {
	s.mu.Lock()
	rooms := make([]string, 0, len(s.joined))
	for r := range s.joined {
		rooms = append(rooms, r)
	}
	clear(s.joined)
	s.mu.Unlock()
	sort.Strings(rooms)
	return rooms
}

// Due returns what the send loop sends now, in order: the Joins whose
// back-off is over, then the messages of the joined rooms that have not
// gone out on this stream, oldest first (the first of a resend alone).
func (s *Session) Due() (joins []*chatv1.ClientEvent, out []*Pending) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range s.rooms {
		rs := s.room(name)
		switch {
		case rs.phase == roomRejoin && !now.Before(rs.due):
			rs.phase = roomJoining
			joins = append(joins, rs.join)
		case rs.phase == roomResend && !now.Before(rs.due):
			rs.phase, rs.sent = roomReady, 0
			if len(rs.queue) > 0 {
				rs.phase, rs.sent = roomProbe, 1
				out = append(out, rs.queue[0])
			}
		}
		if rs.phase == roomReady && rs.sent < len(rs.queue) {
			out = append(out, rs.queue[rs.sent:]...) // a copy: forget edits the queue
			rs.sent = len(rs.queue)
		}
	}
	return joins, out
}

// Queue takes p, a new message, after its room's unacknowledged ones and
// returns what goes out now: nothing until the room is ready, then every
// message of the room not yet sent on this stream, in order. Past
// maxPending unacknowledged messages p goes out at once, untracked.
func (s *Session) Queue(p *Pending) []*Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= s.maxPending {
		return []*Pending{p}
	}
	s.pending[p.ID] = p
	rs := s.room(p.Room)
	rs.queue = append(rs.queue, p)
	if rs.phase != roomReady {
		return nil
	}
	out := append([]*Pending(nil), rs.queue[rs.sent:]...) // a copy: forget edits the queue
	rs.sent = len(rs.queue)
	return out
}

// Acked matches a, an Ack, to its pending message, which it forgets and
// returns (ok false: not one of this session's tracked sends). An Ack
// resets its room's back-off.
func (s *Session) Acked(a *chatv1.Ack) (p *Pending, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok = s.pending[a.ClientMsgId]
	if ok {
		s.forget(p)
		s.room(p.Room).backoff = 0
	}
	return p, ok
}

// Refused applies an Error event: a Send not stored now (UNAVAILABLE)
// makes its room resend from the oldest unacknowledged message after a
// back-off; a Send refused otherwise is forgotten (never resent); a Join
// refused now is sent again after a back-off, one refused for good lets
// the room's Sends go out (each is refused in turn, with its own Error).
func (s *Session) Refused(er *chatv1.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	unavailable := codes.Code(er.Code) == codes.Unavailable
	switch {
	case er.ClientMsgId != "" && unavailable:
		if p := s.pending[er.ClientMsgId]; p != nil {
			if rs := s.room(p.Room); rs.phase == roomReady || rs.phase == roomProbe {
				s.retryLater(rs, roomResend)
			}
		}
	case er.ClientMsgId != "":
		if p := s.pending[er.ClientMsgId]; p != nil {
			s.forget(p)
		}
	case IsJoinError(er):
		if rs := s.state[er.Room]; rs != nil && rs.phase == roomJoining {
			if unavailable {
				s.retryLater(rs, roomRejoin)
			} else {
				rs.phase = roomReady
				s.wake()
			}
		}
	}
}

// IsJoinError reports whether er answers a Join (its field names the join,
// its room is known).
func IsJoinError(er *chatv1.Error) bool {
	return strings.HasPrefix(er.GetField(), "join") && er.GetRoom() != ""
}

// retryLater puts rs into phase (roomRejoin or roomResend) and schedules a
// wake after its back-off. Caller holds s.mu.
func (s *Session) retryLater(rs *room, phase roomPhase) {
	rs.backoff = min(max(rs.backoff*2, MinRetry), MaxRetry)
	rs.phase, rs.due, rs.sent = phase, time.Now().Add(rs.backoff), 0
	time.AfterFunc(rs.backoff, s.wake)
}

// forget drops p (answered: acked or refused for good) from the pending
// messages and its room's queue; a probe's answer lets the others go.
// Caller holds s.mu.
func (s *Session) forget(p *Pending) {
	delete(s.pending, p.ID)
	rs := s.room(p.Room)
	if i := slices.Index(rs.queue, p); i >= 0 {
		rs.queue = slices.Delete(rs.queue, i, i+1)
		if i < rs.sent {
			rs.sent--
		}
	}
	if rs.phase == roomProbe && rs.sent == 0 {
		rs.phase = roomReady
		s.wake()
	}
}
