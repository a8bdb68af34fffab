package h2attack

import (
	"context"
	"errors"
	"fmt"
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

	type outcome struct {
		c      *conn
		reason string
		err    error
	}
	outs := make([]outcome, s.lim.connections)
	var wg sync.WaitGroup
	for i := range s.lim.connections {
		wg.Go(func() {
			c, err := dialConn(ctx, a, i, addr, t, s.settings, !s.zeroWindow)
			if err != nil {
				outs[i].err = err
				return
			}
			outs[i].c = c
			a.emit(Observation{Kind: Connected, Conn: i, Detail: "server SETTINGS: " + c.settings})
			reason, err := s.loop(ctx, c)
			if err == nil || errors.Is(err, errConnEnded) || errors.Is(err, errWriteBlocked) || errors.Is(err, errIDsExhausted) {
				if err != nil {
					reason = err.Error()
				}
				err = nil
				_ = c.flush()
				t := time.NewTimer(max(min(linger, time.Until(a.deadline)), 0))
				select {
				case <-c.done:
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			outs[i].reason, outs[i].err = reason, err
			c.close()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(a.start)

	var errs []error
	reasons := map[string]int{}
	for i, o := range outs {
		if o.err != nil {
			errs = append(errs, o.err)
		}
		c := o.c
		if c == nil {
			continue
		}
		res.Connections++
		res.Frames += c.frames.Load()
		res.Streams += c.streams.Load()
		if c.hasMax && (i == 0 || res.ServerMaxStreams == 0) {
			res.ServerMaxStreams = c.maxStreams
		}
		c.mu.Lock()
		for code, n := range c.resets {
			res.Resets[code.String()] += n
		}
		for st, n := range c.statusEnds {
			res.StatusEnds[st] += n
		}
		res.PingAcks += c.pingAcks
		res.SettingsAcks += c.settingsAcks
		if c.goAway != nil {
			res.GoAways = append(res.GoAways, *c.goAway)
		}
		if c.closed != nil {
			ci := *c.closed
			res.Closed = append(res.Closed, ci)
			if res.FirstClose == nil || ci.After < res.FirstClose.After {
				res.FirstClose = &ci
			}
		}
		if c.writeBlocked {
			res.WriteBlocked++
		}
		c.mu.Unlock()
		reasons[o.reason]++
	}
	switch {
	case res.Connections == 0:
		res.Stopped = "no connection could be set up"
	case len(res.Closed) == res.Connections:
		res.Stopped = "the server closed every connection"
	case len(reasons) == 1:
		for r := range reasons {
			res.Stopped = r
		}
	default:
		res.Stopped = fmt.Sprintf("%v", reasons)
	}
	a.emit(Observation{Kind: Stopped, Conn: -1, Frames: res.Frames, Detail: res.Summary()})
	if res.Connections == 0 {
		return res, fmt.Errorf("h2attack: %s against %s: %w", s.name, t.Addr, errors.Join(errs...))
	}
	return res, nil
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
