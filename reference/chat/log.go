package chat

import (
	"context"
	"fmt"
	"time"

	"github.com/bidikit/bidikit/reference/store"
)

// SharedLog is the log of the rooms: it, not the service, assigns seqs,
// keeps messages and de-duplicates resends; the service follows it and
// relays what it delivers, so members see one order. Two implementations:
// the local log over a store.Store (New, one instance, locallog.go) and
// package cluster's over NATS JetStream (NewShared, several instances).
//
// Payloads are encoded chatv1.Messages without seq (the log's sequence is
// added on delivery). Methods are safe for concurrent use.
type SharedLog interface {
	// Head returns the room's log bounds, creating the empty log on first use.
	Head(ctx context.Context, room string) (store.Head, error)
	// Follow delivers every committed message with seq > after, in seq
	// order, one at a time, until stop is called. fn must not block. onErr
	// hears about feed problems.
	Follow(room string, after uint64, fn func(seq uint64, payload []byte), onErr func(error)) (stop func(), err error)
	// Publish appends payload under the de-duplication key key; done is
	// called exactly once (in Publish order, never blocking) with the seq
	// once the message is committed, with duplicate and the first copy's
	// seq for a known key, or with an error.
	Publish(room, key string, payload []byte, done func(seq uint64, duplicate bool, err error))
	// Range calls fn for the retained messages with from <= seq <= to, in
	// order, stopping at fn's first error.
	Range(ctx context.Context, room string, from, to uint64, fn func(seq uint64, payload []byte) error) error
	// PublishAfter is Publish for a message of writer (a sender and its
	// sender_session) that must directly follow writer's newest stored
	// message, at seq writerLast (0: writer has none): when writer's newest
	// message is elsewhere, nothing is stored and done gets an error
	// wrapping store.ErrConflict (unless key is a resend the log answers
	// as a duplicate).
	PublishAfter(room, writer, key string, payload []byte, writerLast uint64, done func(seq uint64, duplicate bool, err error))
	// WriterLast returns writer's newest stored message: seq and payload,
	// found false when there is none. It may come from a copy that lags
	// (an older message): PublishAfter's condition, not this read, keeps
	// the order.
	WriterLast(ctx context.Context, room, writer string) (seq uint64, payload []byte, found bool, err error)
	// WriterKey returns the seq of writer's message stored under key, among
	// writer's messages up to seq upTo, if the log still retains it.
	WriterKey(ctx context.Context, room, writer, key string, upTo uint64) (seq uint64, found bool, err error)
}

// placer is how a writer's chain (order.go) hands a Send to the log. place
// returns once the log has decided the Send's place: a seq (new, or the
// first copy's for a duplicate), or an error (an error wrapping
// store.ErrConflict: the writer condition failed and nothing was stored).
// After a decision without error, done is called exactly once, when the
// message is committed (err nil) or its commit failed; it may be called
// before place returns. After an error, done is never called.
//
// The service is assembled with one placer: the local log itself, which
// decides at once and commits later (so a writer's Sends are pipelined),
// or waitPlacer over a log that decides only when it has committed
// (JetStream).
type placer interface {
	// place is PublishAfter (writer set: after writerLast) or Publish
	// (writer ""). fresh says the Send cannot be a resend (its writer's
	// sender_seq is above every one this chain placed), so the log need
	// not look its key up in storage.
	place(room, writer, key string, payload []byte, writerLast uint64, fresh bool, done func(seq uint64, dup bool, err error)) published
	// atOnce reports whether place returns without waiting for the
	// network or a commit: then a chain runs on the caller's goroutine
	// (the stream's receive loop) instead of its own.
	atOnce() bool
}

// published is a placement's outcome.
type published struct {
	seq uint64
	dup bool
	err error
}

// waitPlacer places through a SharedLog that decides only when it answers
// a publish (JetStream): place publishes and waits for the answer, up to
// orderCallTimeout, so a writer has one Send in flight at a time (order.go
// says why). An answer after the timeout is dropped.
type waitPlacer struct{ lg SharedLog }

func (w waitPlacer) atOnce() bool { return false }

func (w waitPlacer) place(room, writer, key string, payload []byte, writerLast uint64, _ bool, done func(uint64, bool, error)) published {
	ch := make(chan published, 1) // the log's callback never blocks
	answer := func(seq uint64, dup bool, err error) { ch <- published{seq, dup, err} }
	if writer != "" {
		w.lg.PublishAfter(room, writer, key, payload, writerLast, answer)
	} else {
		w.lg.Publish(room, key, payload, answer)
	}
	t := time.NewTimer(orderCallTimeout)
	defer t.Stop()
	select {
	case res := <-ch:
		if res.err == nil {
			done(res.seq, res.dup, nil)
		}
		return res
	case <-t.C:
		return published{err: fmt.Errorf("the shared log did not answer within %v", orderCallTimeout)}
	}
}
