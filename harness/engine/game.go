package engine

import (
	"math"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/scenario"
	gamev1 "github.com/bidikit/bidikit/proto/bidikit/game/v1"
)

// gameDriver is a player: it joins one match and sends numbered movement
// inputs, steering back towards the centre near the edges. The send loop
// owns seq and the rng; mu guards what the receive loop learns (rules,
// position, last processed input).
type gameDriver struct {
	c        *vclient
	match    string
	stepFrac float64

	seq uint64 // increasing across reconnects, as the server requires
	in  gamev1.ServerEvent

	mu        sync.Mutex
	joined    bool
	playerID  string
	rules     *gamev1.Rules
	x, y      float64
	lastInput uint64
}

func newGameDriver(c *vclient, stepFrac float64) *gameDriver {
	if stepFrac <= 0 {
		stepFrac = 0.8
	}
	return &gameDriver{c: c, match: c.plan.Scopes[0], stepFrac: stepFrac}
}

func init() {
	RegisterService(Service{Name: scenario.Game,
		Desc: &gamev1.GameService_ServiceDesc.Streams[0], Method: gamev1.GameService_Play_FullMethodName,
		Attacker: func(c Client, _ int, _ bool) (Driver, error) {
			return newGameDriver(c.(*vclient), 0.999), nil // just under max_step: full steps can round above it
		}})
}

func (d *gameDriver) Message() proto.Message { return &d.in }

func (d *gameDriver) Start(w Stream) error {
	return w.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Join{Join: &gamev1.JoinMatch{Match: d.match}}})
}

// act sends n movement inputs.
func (d *gameDriver) Act(w Stream, n int) error {
	d.mu.Lock()
	if !d.joined || d.rules == nil {
		d.mu.Unlock()
		return nil
	}
	r := d.rules
	x, y := d.x, d.y
	d.mu.Unlock()
	step := d.stepFrac * r.MaxStep
	for range n {
		angle := d.c.rng.Float64() * 2 * math.Pi
		// Near an edge, head back towards the centre.
		if x < step || y < step || x > r.Width-step || y > r.Height-step {
			angle = math.Atan2(r.Height/2-y, r.Width/2-x)
		}
		dx, dy := step*math.Cos(angle), step*math.Sin(angle)
		x, y = x+dx, y+dy
		d.seq++
		d.c.ev(&event.Event{Kind: event.Send, Scope: d.match, SenderSeq: d.seq})
		in := &gamev1.Input{Match: d.match, Seq: d.seq, Action: gamev1.Action_ACTION_MOVE, Dx: dx, Dy: dy,
			ClientSentUnixNanos: time.Now().UnixNano()}
		if err := w.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: in}}); err != nil {
			return err
		}
	}
	return nil
}

// oversized sends an input whose match name is n bytes long.
func (d *gameDriver) Oversized(w Stream, n int) error {
	d.seq++
	d.c.ev(&event.Event{Kind: event.Send, Scope: d.match, SenderSeq: d.seq})
	in := &gamev1.Input{Match: strings.Repeat("x", n), Seq: d.seq, Action: gamev1.Action_ACTION_STOP}
	return w.Send(&gamev1.ClientEvent{Event: &gamev1.ClientEvent_Input{Input: in}})
}

var kickCodes = map[gamev1.Kick_Reason]codes.Code{
	gamev1.Kick_REASON_INPUT_FLOOD:   codes.ResourceExhausted,
	gamev1.Kick_REASON_SLOW_CONSUMER: codes.ResourceExhausted,
	gamev1.Kick_REASON_CHEATING:      codes.InvalidArgument,
	gamev1.Kick_REASON_IDLE:          codes.DeadlineExceeded,
	gamev1.Kick_REASON_SHUTDOWN:      codes.Unavailable,
}

func (d *gameDriver) Handle(m proto.Message) {
	in := m.(*gamev1.ServerEvent)
	switch ev := in.Event.(type) {
	case *gamev1.ServerEvent_Joined:
		j := ev.Joined
		d.mu.Lock()
		d.joined, d.playerID, d.rules = true, j.PlayerId, j.Rules
		if d.rules == nil {
			d.rules = &gamev1.Rules{Width: 100, Height: 100, MaxStep: 1}
		}
		d.x, d.y = d.rules.Width/2, d.rules.Height/2
		d.mu.Unlock()
		// The event carries the rules as announced (zero when none), not the
		// fallback the driver walks by: checkers judge by what was announced.
		r := j.GetRules()
		d.c.ev(&event.Event{Kind: event.Join, Scope: j.Match, Seq: j.Tick,
			X: r.GetWidth(), Y: r.GetHeight(), MaxStep: r.GetMaxStep(), MaxInputs: r.GetMaxInputsPerTick()})
	case *gamev1.ServerEvent_Tick:
		t := ev.Tick
		now := time.Now()
		e := event.Event{Kind: event.Tick, Scope: t.Match, Seq: t.Tick, LastInput: t.YourLastInput, Dropped: t.DroppedInputs, Full: t.Full,
			SenderSeq: tickDigest(t)}
		d.mu.Lock()
		for _, p := range t.Players {
			if p.PlayerId == d.playerID {
				d.x, d.y = p.X, p.Y
			}
		}
		e.X, e.Y = d.x, d.y
		if t.YourLastInput > d.lastInput {
			d.lastInput = t.YourLastInput
			if t.YourLastInputSentUnixNanos > 0 {
				e.Latency = time.Duration(now.UnixNano() - t.YourLastInputSentUnixNanos)
			}
		}
		d.mu.Unlock()
		d.c.ev(&e)
	case *gamev1.ServerEvent_Kick:
		k := ev.Kick
		d.c.ev(&event.Event{Kind: event.Kick, Scope: k.Match, Detail: k.Reason.String(), Code: kickCodes[k.Reason]})
	case *gamev1.ServerEvent_Error:
		er := ev.Error
		d.c.ev(&event.Event{Kind: event.Error, Code: codes.Code(er.Code), Detail: er.Message, Field: er.Field, Scope: er.Match, SenderSeq: er.Seq})
	}
}

func (d *gameDriver) Ended() {
	d.mu.Lock()
	was := d.joined
	d.joined = false
	d.mu.Unlock()
	if was {
		d.c.ev(&event.Event{Kind: event.Leave, Scope: d.match})
	}
}

// tickDigest is an FNV-1a hash of what update t says (everything but the
// echoed client timestamp), so that game-invariants can tell one state sent
// twice (same tick, same digest) from a tick number used for two states.
func tickDigest(t *gamev1.TickUpdate) uint64 {
	h := uint64(14695981039346656037)
	word := func(v uint64) {
		for range 8 {
			h ^= v & 0xff
			h *= 1099511628211
			v >>= 8
		}
	}
	str := func(s string) {
		for i := 0; i < len(s); i++ {
			h ^= uint64(s[i])
			h *= 1099511628211
		}
		word(uint64(len(s)))
	}
	word(t.Tick)
	if t.Full {
		word(1)
	}
	word(t.YourLastInput)
	word(t.DroppedInputs)
	word(uint64(t.ServerUnixNanos))
	for _, p := range t.Players {
		str(p.PlayerId)
		word(math.Float64bits(p.X))
		word(math.Float64bits(p.Y))
		word(p.LastInput)
	}
	for _, r := range t.Removed {
		str(r)
	}
	return h
}
