package h2attack

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
)

// linger is how long a connection stays open after its attack loop ended,
// to see the server's answer (a GOAWAY, a close), unless the time bound
// comes first.
const linger = 300 * time.Millisecond

// spec is one attack as the runner sees it.
type spec struct {
	name string
	lim  limits
	// settings are sent right after the preface.
	settings []http2.Setting
	// zeroWindow: never grant flow-control window for the server's DATA.
	zeroWindow bool
	// noReconnect: do not dial again when the server closes a connection.
	noReconnect bool
	// describe renders the parameters for the Started observation.
	describe string
	// loop is the attack on one connection; it returns why it stopped.
	loop func(ctx context.Context, c *conn) (string, error)
}

// run runs s against t: connections in parallel, each bounded by the
// count and the deadline, then sums up the result.
func run(ctx context.Context, t Target, req Request, s spec, report Report) (Result, error) {
	res := Result{Attack: s.name, Target: t.Addr, Resets: map[string]int64{}, StatusEnds: map[string]int64{}}
	if err := s.lim.validate(s.name, "count"); err != nil {
		return res, fmt.Errorf("h2attack: %w", err)
	}
	addr, err := resolve(ctx, t)
	if err != nil {
		return res, err
	}
	if req.Path == "" {
		req.Path = "/grpc.health.v1.Health/Watch"
	}
	if req.Authority == "" {
		req.Authority = t.Addr
	}
	a := &attackRun{name: s.name, start: time.Now(), report: report, req: req, scheme: "http"}
	if t.TLS != nil {
		a.scheme = "https"
	}
	a.deadline = a.start.Add(s.lim.duration)
	if d, ok := ctx.Deadline(); ok && d.Before(a.deadline) {
		a.deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, a.deadline)
	defer cancel()
	a.emit(Observation{Kind: Started, Conn: -1, Detail: fmt.Sprintf("%s against %s: %s; %s", s.name, t.Addr, s.describe, s.lim)})

	slots := make([]slot, s.lim.connections)
	var wg sync.WaitGroup
	for i := range s.lim.connections {
		wg.Go(func() { slots[i].run(ctx, a, i, addr, t, s) })
	}
	wg.Wait()
	res.Elapsed = time.Since(a.start)

	var errs []error
	reasons := map[string]int{}
	for i := range slots {
		sl := &slots[i]
		if sl.err != nil {
			errs = append(errs, sl.err)
		}
		if sl.conns == 0 {
			continue
		}
		res.Connections += sl.conns
		res.Reconnects += sl.conns - 1
		res.Frames += sl.frames
		res.Streams += sl.streams
		if sl.hasMax && res.ServerMaxStreams == 0 {
			res.ServerMaxStreams = sl.maxStreams
		}
		for code, n := range sl.resets {
			res.Resets[code.String()] += n
		}
		for st, n := range sl.statusEnds {
			res.StatusEnds[st] += n
		}
		res.PingAcks += sl.pingAcks
		res.SettingsAcks += sl.settingsAcks
		res.HeldAcks += sl.heldAcks
		for _, g := range sl.goAways {
			if len(res.GoAways) < maxKept {
				res.GoAways = append(res.GoAways, g)
			}
		}
		res.ClosedCount += sl.closedCount
		for _, ci := range sl.closed {
			if len(res.Closed) < maxKept {
				res.Closed = append(res.Closed, ci)
			}
			if res.FirstClose == nil || ci.After < res.FirstClose.After {
				c := ci
				res.FirstClose = &c
			}
		}
		res.WriteBlocked += sl.writeBlocked
		reasons[sl.reason]++
	}
	switch {
	case res.Connections == 0:
		res.Stopped = "no connection could be set up"
	case len(reasons) == 1:
		for r := range reasons {
			res.Stopped = r
		}
	default:
		parts := make([]string, 0, len(reasons))
		for r, n := range reasons {
			parts = append(parts, fmt.Sprintf("%s (%d)", r, n))
		}
		sort.Strings(parts)
		res.Stopped = strings.Join(parts, ", ")
	}
	a.emit(Observation{Kind: Stopped, Conn: -1, Frames: res.Frames, Detail: res.Summary()})
	if res.Connections == 0 {
		return res, fmt.Errorf("h2attack: %s against %s: %w", s.name, t.Addr, errors.Join(errs...))
	}
	return res, nil
}

// Reconnects: when the server closes a connection before the attack's
// time bound, its slot dials again after reconnectPause, at most
// maxReconnects times (unless the attack's params turn reconnecting off).
const (
	reconnectPause = 50 * time.Millisecond
	maxReconnects  = 1000
	// maxKept bounds the GOAWAYs and closes a Result lists.
	maxKept = 64
)

// stopServerClosed: the server closed the slot's last connection, and the
// slot did not (or could not) reconnect.
const stopServerClosed = "the server closed the connection"

// slot is one of an attack's parallel connections, dialled again when
// the server closes it (reconnect); it sums up its connections. Only its
// goroutine writes it until run reads it after wg.Wait.
type slot struct {
	conns, closedCount, writeBlocked int
	frames, streams                  int64
	pingAcks, settingsAcks, heldAcks int64
	resets                           map[http2.ErrCode]int64
	statusEnds                       map[string]int64
	goAways                          []GoAwayInfo
	closed                           []CloseInfo
	maxStreams                       uint32
	hasMax                           bool
	reason                           string
	err                              error
}

// run attacks on connection slot i until the loop ends on its own, the
// time bound, or the server closes the connection for the last time.
func (sl *slot) run(ctx context.Context, a *attackRun, i int, addr string, t Target, s spec) {
	sl.resets, sl.statusEnds = map[http2.ErrCode]int64{}, map[string]int64{}
	for attempt := 0; attempt <= maxReconnects; attempt++ {
		c, err := dialConn(ctx, a, i, addr, t, s.settings, !s.zeroWindow)
		if err != nil {
			switch {
			case sl.conns == 0:
				sl.err, sl.reason = err, "could not connect"
			case ctx.Err() != nil:
				sl.reason = c0reason(ctx)
			default:
				sl.reason = "reconnecting failed: " + err.Error()
			}
			return
		}
		sl.conns++
		detail := "server SETTINGS: " + c.settings
		if attempt > 0 {
			detail = fmt.Sprintf("reconnected (%d); %s", attempt, detail)
		}
		a.emit(Observation{Kind: Connected, Conn: i, Detail: detail})
		reason, err := s.loop(ctx, c)
		serverClosed := errors.Is(err, errConnEnded)
		if err == nil || serverClosed || errors.Is(err, errWriteBlocked) || errors.Is(err, errIDsExhausted) {
			if err != nil {
				reason = err.Error()
			}
			err = nil
			_ = c.flush()
			lt := time.NewTimer(max(min(linger, time.Until(a.deadline)), 0))
			select {
			case <-c.done:
			case <-ctx.Done():
			case <-lt.C:
			}
			lt.Stop()
		}
		c.close()
		sl.add(c)
		if err != nil && sl.err == nil {
			sl.err = err
		}
		c.mu.Lock()
		serverClosed = c.closed != nil
		c.mu.Unlock()
		if serverClosed {
			reason = stopServerClosed
		}
		sl.reason = reason
		if !serverClosed || s.noReconnect || ctx.Err() != nil || err != nil {
			return
		}
		pause := time.NewTimer(reconnectPause)
		select {
		case <-ctx.Done():
			pause.Stop()
			return
		case <-pause.C:
		}
	}
}

func c0reason(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return stopDuration
	}
	return stopStopped
}

// add sums up c, a connection that has ended.
func (sl *slot) add(c *conn) {
	sl.frames += c.frames.Load()
	sl.streams += c.streams.Load()
	if c.hasMax && !sl.hasMax {
		sl.maxStreams, sl.hasMax = c.maxStreams, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for code, n := range c.resets {
		sl.resets[code] += n
	}
	for st, n := range c.statusEnds {
		sl.statusEnds[st] += n
	}
	sl.pingAcks += c.pingAcks
	sl.settingsAcks += c.settingsAcks
	c.wmu.Lock()
	sl.heldAcks += c.heldAcks
	c.wmu.Unlock()
	if c.goAway != nil && len(sl.goAways) < maxKept {
		sl.goAways = append(sl.goAways, *c.goAway)
	}
	if c.closed != nil {
		sl.closedCount++
		if len(sl.closed) < maxKept {
			sl.closed = append(sl.closed, *c.closed)
		}
	}
	if c.writeBlocked {
		sl.writeBlocked++
	}
}

// Stop reasons a loop returns.
const (
	stopCount    = "count reached"
	stopDuration = "duration reached"
	stopStopped  = "stopped"
)

// pace calls step(i) for i in [0, count) at rate per second (0: as fast as
// the connection takes them) until the count, the time bound, ctx, or the
// connection's end; it flushes before every wait and every flushEvery
// steps. It returns why it stopped; a write error ends it with that error.
func (c *conn) pace(ctx context.Context, count int, rate float64, step func(i int) error) (string, error) {
	var iv time.Duration
	if rate > 0 {
		iv = max(time.Duration(float64(time.Second)/rate), time.Nanosecond)
	}
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for i := 0; i < count; i++ {
		if i%flushEvery == 0 || iv > 0 {
			select {
			case <-ctx.Done():
				return c.stopReason(ctx), c.flush()
			case <-c.done:
				return "", errConnEnded
			default:
			}
		}
		if iv > 0 {
			due := start.Add(time.Duration(i) * iv)
			if wait := time.Until(due); wait > 0 {
				if err := c.flush(); err != nil {
					return "", err
				}
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-ctx.Done():
					return c.stopReason(ctx), nil
				case <-c.done:
					return "", errConnEnded
				case <-timer.C:
				}
			}
		}
		if err := step(i); err != nil {
			return "", err
		}
		if i%flushEvery == flushEvery-1 {
			if err := c.flush(); err != nil {
				return "", err
			}
		}
	}
	return stopCount, c.flush()
}

func (c *conn) stopReason(ctx context.Context) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return stopDuration
	}
	return stopStopped
}

// holdOpen waits until the time bound, ctx, or the connection's end.
func (c *conn) holdOpen(ctx context.Context) (string, error) {
	select {
	case <-ctx.Done():
		return c.stopReason(ctx), nil
	case <-c.done:
		return "", errConnEnded
	}
}
