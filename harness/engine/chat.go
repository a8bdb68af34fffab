package engine

import (
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/internal/chatclient"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
)

// maxPending bounds the unacknowledged sends a chat client remembers for
// ack latency and for resending after a reconnect.
const maxPending = 4096

// Resend back-off after an UNAVAILABLE answer: the chat client's (see
// chatclient.MinRetry), which the collab driver uses too.
const (
	minRetry = chatclient.MinRetry
	maxRetry = chatclient.MaxRetry
)

// chatDriver speaks bidikit.chat.v1 for chatter, lurker, typist, resumer and
// the chat side of the attackers: an adapter from the Driver contract to a
// chatclient.Session (what to join, send and resend, in which order: see
// its doc) that tells the judge what happened, as events. The send loop
// owns buf, senderSeq and the rng; the Session guards what the receive loop
// also touches. As a chatclient.Handler it is the receive loop's.
type chatDriver struct {
	c      *vclient
	rooms  []string
	body   string
	typist bool // mostly typing indicators
	idPfx  string
	wakeC  chan struct{}
	s      *chatclient.Session

	senderSeq uint64
	buf       chatclient.SendBuf
	in        chatv1.ServerEvent
}

func newChatDriver(c *vclient, bodyBytes int, typist bool) *chatDriver {
	d := &chatDriver{c: c, rooms: c.plan.Scopes, body: strings.Repeat("m", max(bodyBytes, 1)), typist: typist,
		idPfx: c.plan.User + "." + c.r.opts.runID, wakeC: make(chan struct{}, 1)}
	d.buf.Session = c.r.opts.runID
	d.s = chatclient.NewSession(d.rooms, maxPending, d.poke)
	return d
}

func init() {
	RegisterService(Service{Name: scenario.Chat,
		Desc: &chatv1.ChatService_ServiceDesc.Streams[0], Method: chatv1.ChatService_Connect_FullMethodName,
		Attacker: func(c Client, bodyBytes int, _ bool) (Driver, error) {
			return newChatDriver(c.(*vclient), bodyBytes, false), nil
		}})
}

func (d *chatDriver) Message() proto.Message { return &d.in }

func (d *chatDriver) Wake() <-chan struct{} { return d.wakeC }

// poke asks the send loop to look at the rooms (OnWake); it never blocks.
func (d *chatDriver) poke() {
	select {
	case d.wakeC <- struct{}{}:
	default:
	}
}

func (d *chatDriver) Stale(back uint64) { d.s.Stale(back) }

// Start joins every room, resuming from the last seen position after the
// first stream.
func (d *chatDriver) Start(w Stream) error { return sendAll(w, d.s.Start()) }

// OnWake sends again the Joins whose back-off is over, and the messages of
// the joined rooms that have not gone out on this stream, oldest first.
func (d *chatDriver) OnWake(w Stream) error {
	joins, out := d.s.Due()
	if err := sendAll(w, joins); err != nil {
		return err
	}
	return d.transmit(w, out)
}

// sendAll sends evs, in order.
func sendAll(w Stream, evs []*chatv1.ClientEvent) error {
	for _, ev := range evs {
		if err := w.Send(ev); err != nil {
			return err
		}
	}
	return nil
}

// transmit sends ps, in order.
func (d *chatDriver) transmit(w Stream, ps []*chatclient.Pending) error {
	for _, p := range ps {
		if err := w.Send(d.buf.Fill(p.Room, p.ID, p.SenderSeq, p.Body, p.At.UnixNano())); err != nil {
			return err
		}
	}
	return nil
}

// Act sends n messages (typists mostly send typing indicators, to joined
// rooms only).
func (d *chatDriver) Act(w Stream, n int) error {
	for range n {
		room := d.rooms[0]
		if len(d.rooms) > 1 {
			room = d.rooms[d.c.rng.IntN(len(d.rooms))]
		}
		if d.typist && d.c.rng.IntN(5) != 0 {
			if !d.s.Ready(room) {
				continue
			}
			if err := w.Send(chatclient.Typing(room, true)); err != nil {
				return err
			}
			continue
		}
		if err := d.sendBody(w, room, d.body); err != nil {
			return err
		}
	}
	return nil
}

// sendBody numbers a new message and sends it, after the room's older
// unacknowledged ones, once the room is ready (chatclient.Session.Queue).
func (d *chatDriver) sendBody(w Stream, room, body string) error {
	d.senderSeq++
	p := &chatclient.Pending{Room: room, ID: chatclient.MsgID(d.idPfx, d.senderSeq), SenderSeq: d.senderSeq,
		Body: body, At: time.Now()}
	out := d.s.Queue(p)
	d.c.ev(&event.Event{Kind: event.Send, Scope: room, MsgID: p.ID, SenderSeq: d.senderSeq})
	return d.transmit(w, out)
}

func (d *chatDriver) Oversized(w Stream, n int) error {
	return d.sendBody(w, d.rooms[0], strings.Repeat("x", n))
}

func (d *chatDriver) Handle(m proto.Message) { chatclient.Dispatch(m.(*chatv1.ServerEvent), d) }

// Joined implements chatclient.Handler: a Join event.
func (d *chatDriver) Joined(j *chatv1.Joined) {
	after, asked := d.s.Joined(j)
	d.c.ev(&event.Event{Kind: event.Join, Scope: j.Room, Seq: j.HeadSeq, ResumeAfter: after, HasResume: asked,
		ReplayFrom: j.ReplayFrom, Complete: j.ResumeComplete})
}

// Deliver implements chatclient.Handler: a Deliver event with the
// send-to-delivery latency of a live message.
func (d *chatDriver) Deliver(m *chatv1.Message, at time.Time) {
	d.s.Delivered(m)
	e := event.Event{Kind: event.Deliver, Scope: m.Room, Seq: m.Seq, Sender: m.Sender, MsgID: m.ClientMsgId,
		SenderSeq: m.SenderSeq, Replay: m.Replay}
	e.Latency, _ = chatclient.Latency(m, at)
	d.c.ev(&e)
}

// Ack implements chatclient.Handler: an Ack event, with the ack latency
// of a tracked send.
func (d *chatDriver) Ack(a *chatv1.Ack) {
	e := event.Event{Kind: event.Ack, Scope: a.Room, MsgID: a.ClientMsgId, Seq: a.Seq, Duplicate: a.Duplicate}
	if p, ok := d.s.Acked(a); ok {
		e.SenderSeq = p.SenderSeq
		e.Latency = time.Since(p.At)
	} else {
		e.SenderSeq, _ = chatclient.SenderSeqOf(a.ClientMsgId)
	}
	d.c.ev(&e)
}

// Error implements chatclient.Handler: an Error event, after the Session
// has applied it (resend, rejoin or forget).
func (d *chatDriver) Error(er *chatv1.Error) {
	d.s.Refused(er)
	d.c.ev(&event.Event{Kind: event.Error, Code: codes.Code(er.Code), Detail: er.Message, Field: er.Field,
		Scope: er.Room, MsgID: er.ClientMsgId})
}

// Ended emits a Leave for every room the ended stream had joined.
func (d *chatDriver) Ended() {
	for _, r := range d.s.Ended() {
		d.c.ev(&event.Event{Kind: event.Leave, Scope: r})
	}
}
