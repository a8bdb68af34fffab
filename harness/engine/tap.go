package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bidikit/bidikit/harness/check"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
)

// Tap receives a run's raw material as it happens, for runs whose results
// are merged later (package shard writes it to a file). The engine calls
// Begin, then Events any number of times, then End, each from one goroutine
// at a time (Begin and End from Run's, Events from the dispatcher's), in
// that order. A Tap must not block for long: Events holds up the checkers.
type Tap interface {
	// Begin is called once, just before the first client starts, with the
	// wall-clock time that event.Event.At 0 stands for.
	Begin(start time.Time)
	// Events is called with every batch of events, in the order the metrics
	// and the checkers observe them. b is reused after Events returns: copy
	// what must outlive the call.
	Events(b []event.Event)
	// End is called once after the verdicts (not when Run fails before).
	End(Final)
}

// Final is what a run hands its Tap at the end.
type Final struct {
	// Histograms are the run's latency histograms, exportable and mergeable.
	Histograms metrics.Histograms
	// Health is what the checkers learned from Env.Healthy (nil: none asked).
	Health *Health
}

// Health is the outcome of the target's gRPC health checks during the
// verdicts: OK only when every check answered SERVING; Err is the first
// failure's message.
type Health struct {
	OK  bool
	Err string
}

// WithShard makes Run run only share index (0-based) of count of the
// scenario's clients, as partitioned by scenario.Plan.Shard; the other
// shards run the rest, elsewhere, with the same seed. Stream faults fire on
// the chosen clients of this shard only (a firing that chose none of them
// is skipped). Connection faults fire in every shard: each shard's proxy
// carries only its own clients. Server-process faults fire in shard 0 only.
//
//	engine.Run(ctx, s, engine.WithTarget(addr), engine.WithShard(0, 3))
func WithShard(index, count int) Option {
	return func(o *options) error {
		if count < 1 || index < 0 || index >= count {
			return fmt.Errorf("engine: shard %d of %d does not exist (index 0..count-1, count >= 1)", index, count)
		}
		o.shardIndex, o.shardCount = index, count
		return nil
	}
}

// WithTap hands the run's raw events, histograms and health readings to t
// (see Tap).
//
//	w, _ := shard.Create("shard-0.raw"); engine.Run(ctx, s, engine.WithTap(w.Section(hdr)))
func WithTap(t Tap) Option {
	return func(o *options) error { o.tap = t; return nil }
}

// healthLog is a check.Env that records the outcome of every Healthy call
// (checkers may call it from Verdict). mu guards health.
type healthLog struct {
	check.Env
	mu     sync.Mutex
	health *Health
}

func (h *healthLog) Healthy(ctx context.Context) (bool, error) {
	ok, err := h.Env.Healthy(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.health == nil {
		h.health = &Health{OK: true}
	}
	if h.health.OK && (err != nil || !ok) {
		h.health.OK = false
		h.health.Err = "not serving"
		if err != nil {
			h.health.Err = err.Error()
		}
	}
	return ok, err
}

// TargetsHealth forwards check.TargetsEnv (nil when the wrapped Env has no
// per-target health) and records the outcome as Healthy does.
func (h *healthLog) TargetsHealth(ctx context.Context) []check.TargetHealth {
	te, ok := h.Env.(check.TargetsEnv)
	if !ok {
		return nil
	}
	hs := te.TargetsHealth(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.health == nil {
		h.health = &Health{OK: true}
	}
	for _, t := range hs {
		if h.health.OK && t.Asked && t.Err != nil {
			h.health.OK, h.health.Err = false, fmt.Sprintf("target %s: %v", t.Target, t.Err)
		}
	}
	return hs
}

func (h *healthLog) read() *Health {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.health
}
