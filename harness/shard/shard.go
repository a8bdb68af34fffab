// Package shard is the raw result of one shard of a run and how shards
// merge into one report: write (write.go), read (read.go), merge (merge.go).
//
// A run spread over n machines runs each scenario's clients in n disjoint
// shares (`bidikit run --shard i/n`, scenario.Plan.Shard). Percentiles and
// most checks cannot be combined from per-shard summaries (a p99 of p99s is
// not a p99; a room's total order spans members in every shard), so each
// shard writes its raw material instead, and `bidikit report merge` judges
// the union:
//
//   - the scenario's identity and its YAML bytes, so that merge rebuilds the
//     very checks the shards ran without needing the file;
//   - every event, in the order the shard's checkers observed them;
//   - the shard's HDR latency histograms, which merge exactly;
//   - the shard's own result: harness counters, verdicts of the checks that
//     read the server itself (leaks), and the target's health as its
//     checkers saw it.
//
// # File format
//
// A raw file is a gzip stream holding one encoding/gob stream of frames. Per
// scenario the run ran, in order: one Header frame, any number of Events
// frames (one per batch the engine dispatched), one Trailer frame. Writing
// streams to the file (memory stays bounded however long the run); so does
// reading. Format is bumped on any incompatible change.
package shard

import (
	"fmt"
	"time"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/metrics"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
)

// Format is the raw file format version this package writes and reads.
//
// 2: a stream's Disconnect precedes the Leaves it implies (checkers rely on
// that order), and game Joins carry the announced rules.
const Format = 2

// Header identifies one scenario of one shard.
type Header struct {
	// Format is the file format version (see Format).
	Format int
	// Name, File, Service and Seed identify the scenario; Seed is the one
	// the run used (after any --seed override).
	Name    string
	File    string
	Service string
	Seed    int64
	// Index (0-based) and Count say which shard this is.
	Index, Count int
	// Scenario is the scenario file's bytes, re-parsed by merge.
	Scenario []byte
	// Target is the address the shard drove.
	Target string
	// StartedAt is the wall-clock time event.Event.At 0 stands for (zero
	// when the run failed before any client started). Merge aligns shards
	// by it.
	StartedAt time.Time
}

// Label renders the shard 1-based, as the command line does: "2/3".
func (h *Header) Label() string { return fmt.Sprintf("%d/%d", h.Index+1, h.Count) }

// Trailer closes one scenario of one shard.
type Trailer struct {
	// Result is the shard's own result (its clients only).
	Result result.Scenario
	// Histograms are the shard's exported histograms; nil when the run
	// failed before its verdicts.
	Histograms *metrics.Histograms
	// Health is what the shard's checkers learned of the target's health
	// (nil: none asked).
	Health *engine.Health
	// Events is how many events the section holds (an integrity check).
	Events int64
}

// frame is one gob value of a raw file: exactly one field is set.
type frame struct {
	Header  *Header
	Events  []event.Event
	Trailer *Trailer
}

// HeaderFor is the header of scenario s (carrying s.Source, the YAML it was
// decoded from) for shard index (0-based) of count, run against target.
func HeaderFor(s *scenario.Scenario, target string, index, count int) Header {
	return Header{Format: Format, Name: s.Name, File: s.File, Service: s.Service, Seed: s.Seed,
		Index: index, Count: count, Scenario: s.Source, Target: target}
}
