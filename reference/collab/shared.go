package collab

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bidikit/bidikit/reference/metrics"
	"github.com/bidikit/bidikit/reference/store"
)

// SharedLog is a per-document operation log that several server instances
// share (package cluster implements it over NATS JetStream, one stream per
// document). The log's sequence IS the document version: every entry is a
// RemoteOp already transformed against every entry before it, so replaying
// the log in order rebuilds the text on any instance.
//
// Versions are assigned by the log through optimistic concurrency: an
// instance transforms an op against the newest version it has applied (v)
// and appends it expecting the log to end at v. When another instance got
// there first the append fails with an error wrapping store.ErrConflict, and
// the instance waits for the log's newer entries, transforms again and
// retries. No sequencer of ours exists: JetStream decides who was first.
//
// Methods are safe for concurrent use.
type SharedLog interface {
	// Head returns the document log's bounds, creating the empty log on
	// first use.
	Head(ctx context.Context, doc string) (store.Head, error)
	// Follow delivers every entry with seq > after, in seq order, one at a
	// time on one goroutine, until stop is called. onErr hears about feed
	// problems.
	Follow(doc string, after uint64, fn func(seq uint64, payload []byte), onErr func(error)) (stop func(), err error)
	// Append stores payload under the de-duplication key key if the log
	// ends at expectLast. done is called exactly once, never blocking: with
	// the seq, with duplicate and the first copy's seq for a known key, with
	// an error wrapping store.ErrConflict when the log had grown, or with
	// another error (the entry may or may not be stored).
	Append(doc, key string, payload []byte, expectLast uint64, done func(seq uint64, duplicate bool, err error))
	// Range calls fn for the retained entries with from <= seq <= to, in
	// order, stopping at fn's first error.
	Range(ctx context.Context, doc string, from, to uint64, fn func(seq uint64, payload []byte) error) error
	// Lookup returns the seq stored under key, if the log retains it.
	Lookup(ctx context.Context, doc, key string) (seq uint64, found bool, err error)
}

// docLog is the log behind a Service's documents, chosen once at assembly:
// a localLog over a store.Store (New) or a shared log of other instances
// (NewShared, through sharedDocs). The documents use nothing else.
type docLog interface {
	SharedLog
	// Snapshot returns doc's newest stored text and its version, if any.
	Snapshot(ctx context.Context, doc string) (seq uint64, text string, ok bool, err error)
	// PutSnapshot stores text as doc's text at the committed version seq;
	// done must not block.
	PutSnapshot(doc string, seq uint64, text string, done func(error))
	// close stops the feeds the log runs for the Service and waits for them.
	close()
}

// sharedDocs is a SharedLog as a docLog: no snapshots (an instance opening
// a document replays its log), and the log belongs to the caller.
type sharedDocs struct{ SharedLog }

func (sharedDocs) Snapshot(context.Context, string) (uint64, string, bool, error) {
	return 0, "", false, nil
}
func (sharedDocs) PutSnapshot(_ string, _ uint64, _ string, done func(error)) { done(nil) }
func (sharedDocs) close()                                                     {}

// sharedCallTimeout bounds one log call made while serving a client event
// (Head, Lookup).
const sharedCallTimeout = 10 * time.Second

// sharedLoadTimeout bounds replaying a document's log on first use.
const sharedLoadTimeout = 2 * time.Minute

// maxAppendTries bounds how often one submit is transformed again and
// re-appended after losing the race to other instances; past it the author
// gets Error UNAVAILABLE and resends.
const maxAppendTries = 64

// NewShared returns a collab service whose documents live in lg, shared
// with other instances, counting into m (nil: discarded); log may be nil
// (slog.Default). Snapshots are not stored in shared mode: an instance
// opening a document replays its log. Appends go one at a time per document
// (another instance may append between two of ours). The caller owns lg.
func NewShared(cfg Config, lg SharedLog, m *metrics.Set, log *slog.Logger) (*Service, error) {
	if lg == nil {
		return nil, errors.New("collab: nil shared log")
	}
	return newService(cfg, sharedDocs{lg}, assembly{inFlight: 1}, m, log)
}
