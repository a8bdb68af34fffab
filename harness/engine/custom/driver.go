package custom

import (
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/protocol"
)

// maxPending bounds the messages a client remembers (unacknowledged, or
// waiting for their own delivery); past it a message goes out untracked.
const maxPending = 4096

// pending is one message this client sent.
type pending struct {
	id   string
	room string
	seq  uint64 // sender seq
	at   time.Time
	body string
	// acked: its ack came (or it was refused); own: its own delivery came
	// (matchOwn). It is forgotten once everything it waits for came.
	acked, own bool
	// announced: its Send event went out, just before its first
	// transmission (send loop only): a message that waits for a join that
	// never comes was never sent, and no check may think it was.
	announced bool
}

// room is one room's sending state: queue outlives streams (messages not
// yet acknowledged, when acks are tracked; otherwise messages waiting for
// the room to be joined), sent and ready are per stream.
type room struct {
	queue   []*pending
	sent    int  // queue[:sent] went out on the current stream
	ready   bool // joined on the current stream: sends go out
	joining bool // a join went out and its confirmation has not come
}

// driver speaks a protocol mapping for one virtual client: chatter,
// lurker, resumer and the attackers. The send loop owns senderSeq and the
// encoding; mu guards what the receive loop also touches (positions,
// rooms, pending messages). Rooms are named on the wire and in events as
// the mapping's room_name makes them.
type driver struct {
	c     engine.Client
	st    *runState
	m     *protocol.Mapping
	rooms []string
	body  string
	wakeC chan struct{}
	// every, offline: a resumer's cycle (engine.Cycler); zero otherwise.
	every, offline time.Duration

	senderSeq uint64 // send loop

	in  *dynamicpb.Message  // receive loop: read into, then classified
	got []protocol.Incoming // receive loop: Classify's scratch
	// unreadN counts the current stream's unread messages (receive loop;
	// reset by Ended, after both loops returned).
	unreadN int

	// startJoins are the Join events of a stream of a protocol without a
	// joined rule: emitted (emitStart) when the stream is first used, by
	// whichever loop comes first, not by Start itself, since Start also
	// runs on streams that are never read (an HTTP/2 attack encodes what
	// its streams send by calling Start). hasStart says there are some.
	hasStart   atomic.Bool
	startJoins []*event.Event // guarded by mu

	mu        sync.Mutex
	pos       map[string]uint64 // highest seq seen per room
	hasPos    map[string]bool
	asked     map[string]uint64 // resume position asked on the current stream
	joined    map[string]bool   // memberships of the current stream (Leave at its end)
	state     map[string]*room
	pending   map[string]*pending // by client message id
	bySeq     map[uint64]*pending // by sender seq (an echo's own deliveries)
	staleBack uint64              // positions to go back on the next resume (+1; 0: none)
}

func newDriver(c engine.Client, bodyBytes int) (*driver, error) {
	st, err := stateOf(c)
	if err != nil {
		return nil, err
	}
	d := &driver{c: c, st: st, m: st.m, body: strings.Repeat("m", max(bodyBytes, 1)),
		wakeC: make(chan struct{}, 1),
		in:    dynamicpb.NewMessage(st.m.Method().Output()),
		pos:   map[string]uint64{}, hasPos: map[string]bool{}, asked: map[string]uint64{},
		joined: map[string]bool{}, state: map[string]*room{}, pending: map[string]*pending{}, bySeq: map[uint64]*pending{}}
	for _, s := range c.Scopes() {
		d.rooms = append(d.rooms, wireName(st.m, s))
	}
	if st.m.Echo() {
		// An echo's stream is a room of its own: the client's.
		d.rooms = []string{c.User()}
	}
	if len(d.rooms) == 0 {
		d.rooms = []string{st.m.RoomName(0)}
	}
	return d, nil
}

// wireName is a plan scope's ("room-3") room name under the mapping
// (room_name with {{index}} 3).
func wireName(m *protocol.Mapping, scope string) string {
	i := strings.LastIndexByte(scope, '-')
	n, err := strconv.Atoi(scope[i+1:])
	if err != nil {
		return scope
	}
	return m.RoomName(n)
}

var (
	_ engine.Driver    = (*driver)(nil)
	_ engine.Waker     = (*driver)(nil)
	_ engine.Resumer   = (*driver)(nil)
	_ engine.Oversizer = (*driver)(nil)
	_ engine.Cycler    = (*driver)(nil)
)

func (d *driver) Message() proto.Message { return d.in }

func (d *driver) Wake() <-chan struct{} { return d.wakeC }

// Cycle implements engine.Cycler: a resumer's reconnect period.
func (d *driver) Cycle() (every, offline time.Duration) { return d.every, d.offline }

// poke asks the send loop to look at the rooms (OnWake); it never blocks.
func (d *driver) poke() {
	select {
	case d.wakeC <- struct{}{}:
	default:
	}
}

// Stale implements engine.Resumer: the next resume goes back further.
func (d *driver) Stale(back uint64) {
	d.mu.Lock()
	d.staleBack = back + 1
	d.mu.Unlock()
}

// room returns name's state. Caller holds d.mu.
func (d *driver) room(name string) *room {
	r := d.state[name]
	if r == nil {
		r = &room{}
		d.state[name] = r
	}
	return r
}

// values are the template values every message of this client shares.
func (d *driver) values(roomName string) protocol.Values {
	return protocol.Values{Room: roomName, Client: d.c.User(), Session: d.st.runID, Token: d.st.token(d.c.User())}
}

// Start joins every room: a resume from the last seen position when the
// client saw one and the mapping has a resume message, else a join (when
// the mapping has one). Without a joined rule a room is joined at once.
func (d *driver) Start(s engine.Stream) error {
	type join struct {
		name  string
		room  string
		after uint64
		asked bool
	}
	var joins []join
	var now []*event.Event // Join events, emitted when the stream is used
	d.mu.Lock()
	clear(d.asked)
	for _, name := range d.rooms {
		j := join{name: protocol.OutJoin, room: name}
		if d.hasPos[name] && d.m.Mapped(protocol.Out(protocol.OutResume)) {
			after := d.pos[name]
			if d.staleBack > 0 {
				if back := d.staleBack - 1; back == 0 || back >= after {
					after = 0
				} else {
					after -= back
				}
			}
			j.name, j.after, j.asked = protocol.OutResume, after, true
			d.asked[name] = after
		}
		r := d.room(name)
		r.sent, r.ready, r.joining = 0, false, d.st.joinedRule
		if !d.st.joinedRule {
			r.ready = true
			e := &event.Event{Kind: event.Join, Scope: name, ResumeAfter: j.after, HasResume: j.asked}
			if d.m.Echo() {
				e.Seq = d.senderSeq // the stream echoes from the next message on
			}
			now = append(now, e)
		}
		joins = append(joins, j)
	}
	d.staleBack = 0
	d.startJoins = now
	d.hasStart.Store(len(now) > 0)
	d.mu.Unlock()
	for _, j := range joins {
		if !d.m.Mapped(protocol.Out(j.name)) {
			continue
		}
		v := d.values(j.room)
		v.ResumeSeq = j.after
		msg, err := d.m.Encode(j.name, v)
		if err != nil {
			return err
		}
		if err := s.Send(msg); err != nil {
			return err
		}
	}
	if !d.st.joinedRule {
		d.poke() // what waited for the room goes out now (OnWake)
	}
	return nil
}

// emitStart emits the stream's Join events of a protocol without a joined
// rule, once: the stream is in use.
func (d *driver) emitStart() {
	if !d.hasStart.Load() {
		return
	}
	d.mu.Lock()
	js := d.startJoins
	d.startJoins = nil
	d.hasStart.Store(false)
	for _, e := range js {
		d.joined[e.Scope] = true
	}
	d.mu.Unlock()
	for _, e := range js {
		d.c.Emit(e)
	}
}

// OnWake sends what the ready rooms have not sent on this stream, oldest
// first: unacknowledged messages after a (re)join, messages that waited
// for the join.
func (d *driver) OnWake(s engine.Stream) error {
	d.emitStart()
	var out []*pending
	d.mu.Lock()
	for _, name := range d.rooms {
		r := d.room(name)
		if !r.ready || r.sent >= len(r.queue) {
			continue
		}
		out = d.unsent(out, r)
		d.sentOut(r)
	}
	d.mu.Unlock()
	return d.transmit(s, out)
}

// unsent appends to out what r's queue has not sent on this stream, but
// for messages already acked (kept only to match their own delivery): the
// server has them, and a resend would be a second copy the run made, not
// the server. Caller holds d.mu.
func (d *driver) unsent(out []*pending, r *room) []*pending {
	for _, p := range r.queue[r.sent:] {
		if !p.acked {
			out = append(out, p)
		}
	}
	return out
}

// sentOut marks r's queue as sent on this stream; without ack tracking the
// queue only held what waited for the join. Caller holds d.mu.
func (d *driver) sentOut(r *room) {
	if d.st.trackAcks {
		r.sent = len(r.queue)
		return
	}
	r.queue, r.sent = nil, 0
}

// transmit encodes and sends ps, in order.
func (d *driver) transmit(s engine.Stream, ps []*pending) error {
	for _, p := range ps {
		v := d.values(p.room)
		v.Body, v.ClientMsgID, v.SenderSeq, v.SendTimeUnixNano = p.body, p.id, p.seq, p.at.UnixNano()
		msg, err := d.m.Encode(protocol.OutSend, v)
		if err != nil {
			return err
		}
		if !p.announced {
			p.announced = true
			d.c.Emit(&event.Event{Kind: event.Send, Scope: p.room, MsgID: p.id, SenderSeq: p.seq})
		}
		if err := s.Send(msg); err != nil {
			return err
		}
	}
	return nil
}

// Act sends n messages, each to one of the client's rooms.
func (d *driver) Act(s engine.Stream, n int) error {
	d.emitStart()
	for range n {
		name := d.rooms[0]
		if len(d.rooms) > 1 {
			name = d.rooms[d.c.Rand().IntN(len(d.rooms))]
		}
		if err := d.sendBody(s, name, d.body); err != nil {
			return err
		}
	}
	return nil
}

// sendBody numbers a new message and sends it once its room is ready,
// after the room's older waiting ones; past maxPending remembered messages
// it goes out at once, untracked.
func (d *driver) sendBody(s engine.Stream, name, body string) error {
	d.senderSeq++
	p := &pending{id: d.c.User() + "." + d.st.runID + "." + strconv.FormatUint(d.senderSeq, 10),
		room: name, seq: d.senderSeq, at: time.Now(), body: body}
	out := []*pending{p}
	d.mu.Lock()
	r := d.room(name)
	if len(d.pending) < maxPending {
		if d.st.trackAcks || d.st.matchOwn {
			d.pending[p.id] = p
			d.bySeq[p.seq] = p
		}
		if d.st.trackAcks || !r.ready {
			r.queue = append(r.queue, p)
			out = nil
			if r.ready {
				out = d.unsent(out, r)
				d.sentOut(r)
			}
		}
	}
	d.mu.Unlock()
	if !d.m.Mapped(protocol.Out(protocol.OutSend)) {
		return nil // a lurker-only protocol: nothing is sent, nothing said sent
	}
	return d.transmit(s, out)
}

// forget drops p once everything it waits for came (its ack, when acks are
// tracked; its own delivery, when matched). Caller holds d.mu.
func (d *driver) forget(p *pending) {
	if (d.st.trackAcks && !p.acked) || (d.st.matchOwn && !p.own) {
		return
	}
	delete(d.pending, p.id)
	if d.bySeq[p.seq] == p {
		delete(d.bySeq, p.seq)
	}
	r := d.room(p.room)
	for i, q := range r.queue {
		if q == p {
			r.queue = append(r.queue[:i], r.queue[i+1:]...)
			if i < r.sent {
				r.sent--
			}
			break
		}
	}
}

// Ended emits a Leave for each room the ended stream was in and resets the
// per-stream state.
func (d *driver) Ended() {
	d.unreadN = 0
	d.mu.Lock()
	rooms := make([]string, 0, len(d.joined))
	for r := range d.joined {
		rooms = append(rooms, r)
	}
	clear(d.joined)
	d.startJoins = nil
	d.hasStart.Store(false)
	for _, r := range d.state {
		r.sent, r.ready, r.joining = 0, false, false
	}
	d.mu.Unlock()
	sort.Strings(rooms)
	for _, r := range rooms {
		d.c.Emit(&event.Event{Kind: event.Leave, Scope: r})
	}
}
