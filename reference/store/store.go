// Package store keeps ordered, durable logs of records, one log per stream
// (a chat room, a collab document), plus snapshots. The services assign
// sequence numbers; the store persists records in that order and reports
// commit through a callback, so a service acks only what is committed.
//
// Two implementations: Memory (bounded retention, nothing survives the
// process) and SQLite (Open with a path: WAL, synchronous=FULL, one writer
// goroutine committing in batches — group commit — each commit storing a
// stream's records as one chunk row, plus a key row per keyed record).
package store

import (
	"errors"
)

// Record is one entry of a stream's log.
type Record struct {
	// Stream names the log, e.g. "chat/lobby" or "collab/readme".
	Stream string
	// Seq is the record's position, 1, 2, 3, ... without gaps per stream.
	Seq uint64
	// Key de-duplicates resends: a service-chosen string unique per stream
	// (chat: sender + client message id; collab: client id + client seq).
	Key string
	// UnixNanos is when the service ordered the record.
	UnixNanos int64
	// Payload is the service's encoding of the record (opaque to the store).
	Payload []byte
}

// Snapshot is a stream's materialised state at Seq (collab document text).
type Snapshot struct {
	Stream string
	Seq    uint64
	Data   []byte
}

// Head describes what a stream's log holds.
type Head struct {
	// Last is the highest committed seq, 0 when the log is empty.
	Last uint64
	// Oldest is the lowest seq still retained, 0 when the log is empty.
	// Records below it were dropped by retention.
	Oldest uint64
}

// ErrClosed is returned (and passed to callbacks) after Close.
var ErrClosed = errors.New("store closed")

// Store is the storage contract. All methods are safe for concurrent use.
type Store interface {
	// Append queues rec for commit and returns at once. A stream's seqs
	// must increase: SQLite fails a record whose seq is not above the
	// stream's last stored one (or whose key is stored) with ErrConflict.
	// done is called exactly once, from the store's writer goroutine, after
	// the batch holding rec is committed (err nil) or failed. Callbacks run in Append order, so a
	// service that appends under its stream's lock sees commits in seq order.
	// done must not block: it may queue work, never wait for it.
	Append(rec Record, done func(err error))
	// Head returns what stream's log holds (committed records only).
	Head(stream string) (Head, error)
	// Range calls fn for each committed record of stream with from <= Seq <=
	// to, in order, stopping early when fn returns an error (which Range
	// returns).
	Range(stream string, from, to uint64, fn func(Record) error) error
	// FindKey returns the seq of the committed record of stream with key.
	FindKey(stream, key string) (seq uint64, ok bool, err error)
	// PutSnapshot stores a snapshot, replacing any older one of the stream.
	// It is ordered after every Append issued before it.
	PutSnapshot(s Snapshot, done func(err error))
	// LatestSnapshot returns the newest snapshot of stream, if any.
	LatestSnapshot(stream string) (Snapshot, bool, error)
	// Durable reports whether committed records survive a process crash.
	Durable() bool
	// Close commits what is queued, stops the writer and releases files.
	Close() error
}
