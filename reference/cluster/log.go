// Package cluster keeps the reference server's room logs in NATS JetStream,
// so that several server instances share them: one stream per room, whose
// stream sequence IS the room's gapless sequence number. Ordering,
// durability, replication and de-duplication all come from JetStream; this
// package only names streams and subjects and adapts the calls.
//
// Layout for kind "chat" and room R (R escaped to a subject token, see
// Token):
//
//	stream   CHAT_<R>                 file or memory storage, Duplicates window
//	subject  bidikit.chat.<R>.<K>     one subject per de-duplication key
//	subject  bidikit.chat.<R>.w<W>    every entry of writer W, in W's order (writer.go)
//
// K is a hash of the message's de-duplication key (sender + client message
// id). A publish carries it twice: as Nats-Msg-Id (a resend inside the
// Duplicates window is answered with PubAck.Duplicate and the original seq)
// and as the expectation "no message on this subject yet"
// (Nats-Expected-Last-Subject-Sequence: 0), which catches resends after the
// window for as long as the stream retains the original; its seq is then read
// back with a direct get of the subject's last message. The cost is one
// subject per message in the stream's subject index.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidikit/bidikit/reference/store"
)

// Config describes how a Log lays out its streams. Start from DefaultConfig.
type Config struct {
	// Kind names the service: streams are UPPER(Kind)_<room>, subjects
	// bidikit.<Kind>.<room>.<key>. Default "chat".
	Kind string
	// Memory keeps streams in memory instead of files (lost when the NATS
	// server stops). Default false: file storage.
	Memory bool
	// Replicas is the stream replication factor (1 for a single NATS server,
	// 3 for a JetStream cluster). Default 1.
	Replicas int
	// Duplicates is JetStream's de-duplication window for Nats-Msg-Id.
	// Default 2m. Resends after it are still caught while the original is
	// retained (see the package comment).
	Duplicates time.Duration
	// MaxMsgs bounds each room's stream (the oldest are dropped); 0 keeps
	// everything. Default 0.
	MaxMsgs int64
	// Timeout bounds every JetStream API call and every publish acknowledgement.
	// Default 5s.
	Timeout time.Duration
	// MaxPending bounds publishes awaiting their acknowledgement; Publish
	// blocks (briefly) beyond it. Default 4096.
	MaxPending int
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{Kind: "chat", Replicas: 1, Duplicates: 2 * time.Minute, Timeout: 5 * time.Second, MaxPending: 4096}
}

func (c Config) check() error {
	switch {
	case c.Kind == "" || strings.ContainsAny(c.Kind, ".*> \t"):
		return fmt.Errorf("cluster config: kind %q must be a non-empty subject token", c.Kind)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("cluster config: replicas is %d, want 1..5", c.Replicas)
	case c.Duplicates <= 0:
		return fmt.Errorf("cluster config: duplicates window is %v, want > 0", c.Duplicates)
	case c.Timeout <= 0:
		return fmt.Errorf("cluster config: timeout is %v, want > 0", c.Timeout)
	case c.MaxPending < 1:
		return fmt.Errorf("cluster config: max pending is %d, want >= 1", c.MaxPending)
	case c.MaxMsgs < 0:
		return fmt.Errorf("cluster config: max msgs is %d, want >= 0", c.MaxMsgs)
	}
	return nil
}

// leaderReadTimeout bounds one read from a stream's leader (at most the
// Config's Timeout): while a leader is being elected nobody answers, and the
// caller (a Join, a client's resend) does better to try again soon than to
// wait.
const leaderReadTimeout = 2 * time.Second

// readConsumer creates a short-lived consumer of stream for reading
// (memory, one replica, no acks; cfg says where it starts and what it
// filters). While nobody can create it (no stream leader, an API request
// nobody answers) it tries again every headRetry, each attempt bounded by
// leaderReadTimeout, for at most headWait or until ctx ends.
func (l *Log) readConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cfg.AckPolicy, cfg.InactiveThreshold, cfg.MemoryStorage, cfg.Replicas = jetstream.AckNonePolicy, 30*time.Second, true, 1
	ctx, cancel := context.WithTimeout(ctx, max(headWait, l.cfg.Timeout))
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, min(l.cfg.Timeout, leaderReadTimeout))
		cons, err := l.js.CreateConsumer(actx, stream, cfg)
		acancel()
		if err == nil {
			return cons, nil
		}
		t := time.NewTimer(headRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
	}
}

// headWait and headRetry pace Head while a stream has no leader.
const (
	headWait  = 15 * time.Second
	headRetry = 250 * time.Millisecond
)

// ErrClosed is passed to Publish callbacks after Close.
var ErrClosed = errors.New("cluster log closed")

// Log is a set of room logs in JetStream. Its methods are safe for
// concurrent use. Publish callbacks run on the Log's acker goroutine, one at
// a time, in Publish order.
type Log struct {
	js  jetstream.JetStream
	cfg Config
	log *slog.Logger
	// apiPrefix is the JetStream API subject prefix ("$JS.API.").
	apiPrefix string

	mu     sync.RWMutex // guards closed and sends on acks (Close closes acks under the write lock)
	closed bool
	acks   chan pendingPub
	done   chan struct{} // closed when the acker returned

	bg sync.WaitGroup // Follow feeds and their consumer deletions

	feedsMu sync.Mutex
	feeds   map[*follower]struct{} // running Follow feeds, stopped by Close
}

type pendingPub struct {
	f       jetstream.PubAckFuture
	stream  string
	subject string
	kind    pubKind
	done    func(seq uint64, duplicate bool, err error)
}

// pubKind says what a publish expected of the log, and so what a wrong last
// sequence that is no resend means.
type pubKind int

const (
	pubPlain  pubKind = iota // Publish: only a resend fails the expectation
	pubAppend                // Append: ErrConflict
	pubWriter                // PublishAfter: ErrWriterMoved
)

// ErrConflict is passed to an Append callback when the log had grown past
// the expected last seq: another writer appended first. Nothing was stored;
// catch up with the log and append again.
// It wraps store.ErrConflict.
var ErrConflict = fmt.Errorf("the log has grown past the expected last seq: %w", store.ErrConflict)

// New returns a Log using the JetStream of nc. The caller owns nc and closes
// it after Close. log may be nil (discard).
func New(nc *nats.Conn, cfg Config, log *slog.Logger) (*Log, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if nc == nil {
		return nil, errors.New("cluster: nil NATS connection")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.Timeout),
		jetstream.WithDefaultTimeout(cfg.Timeout))
	if err != nil {
		return nil, fmt.Errorf("cluster: JetStream on %s: %w", nc.ConnectedUrlRedacted(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		return nil, fmt.Errorf("cluster: JetStream is not available on %s (start nats-server with -js): %w", nc.ConnectedUrlRedacted(), err)
	}
	l := &Log{js: js, cfg: cfg, log: log, apiPrefix: jetstream.DefaultAPIPrefix,
		acks: make(chan pendingPub, cfg.MaxPending), done: make(chan struct{})}
	go l.acker()
	return l, nil
}

// ForKind returns a Log over the same JetStream connection for another
// service kind (its own streams, subjects and acker goroutine), configured
// as l otherwise. Close it separately, before the connection.
func (l *Log) ForKind(kind string) (*Log, error) {
	cfg := l.cfg
	cfg.Kind = kind
	if err := cfg.check(); err != nil {
		return nil, err
	}
	k := &Log{js: l.js, cfg: cfg, log: l.log, apiPrefix: l.apiPrefix,
		acks: make(chan pendingPub, cfg.MaxPending), done: make(chan struct{})}
	go k.acker()
	return k, nil
}

// Conn is the NATS connection the Log uses (its owner closes it).
func (l *Log) Conn() *nats.Conn { return l.js.Conn() }

// Token escapes a room name ([A-Za-z0-9._-]) into one subject and stream
// name token, injectively: '_' becomes "__" and '.' becomes "_d".
func Token(room string) string {
	if !strings.ContainsAny(room, "._") {
		return room
	}
	var b strings.Builder
	for i := 0; i < len(room); i++ {
		switch c := room[i]; c {
		case '_':
			b.WriteString("__")
		case '.':
			b.WriteString("_d")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// StreamName returns the stream holding room's log.
func (l *Log) StreamName(room string) string { return strings.ToUpper(l.cfg.Kind) + "_" + Token(room) }

func (l *Log) subjectRoot(room string) string { return "bidikit." + l.cfg.Kind + "." + Token(room) }

// keyToken is the subject token and Nats-Msg-Id of a de-duplication key.
func keyToken(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:16])
}

func (l *Log) streamConfig(room string) jetstream.StreamConfig {
	st := jetstream.FileStorage
	if l.cfg.Memory {
		st = jetstream.MemoryStorage
	}
	maxMsgs := l.cfg.MaxMsgs
	if maxMsgs == 0 {
		maxMsgs = -1
	}
	return jetstream.StreamConfig{
		Name:        l.StreamName(room),
		Description: "bidikit " + l.cfg.Kind + " room " + room,
		Subjects:    []string{l.subjectRoot(room) + ".*"},
		Storage:     st,
		Replicas:    l.cfg.Replicas,
		Duplicates:  l.cfg.Duplicates,
		MaxMsgs:     maxMsgs,
		Discard:     jetstream.DiscardOld,
		Retention:   jetstream.LimitsPolicy,
		AllowDirect: true,
	}
}

// stream returns room's stream, creating it when missing. Instances racing
// to create it all succeed: JetStream accepts an identical configuration.
// Asking for the stream is bounded by leaderReadTimeout (its leader answers:
// none does while one is elected), creating it by ctx.
func (l *Log) stream(ctx context.Context, room string) (jetstream.Stream, error) {
	name := l.StreamName(room)
	ictx, cancel := context.WithTimeout(ctx, min(l.cfg.Timeout, leaderReadTimeout))
	s, err := l.js.Stream(ictx, name)
	cancel()
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = l.js.CreateStream(ctx, l.streamConfig(room))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = l.js.Stream(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s of room %q: %w", name, room, err)
	}
	return s, nil
}

// Head returns what room's log holds (creating the empty log on first use):
// Last is the highest seq, Oldest the lowest retained one (0 when empty).
//
// While the stream has no leader (one is being elected: 4-9 s after the
// server that led it died) Head asks again every headRetry, for at most
// headWait or until ctx ends, whichever comes first: a caller that can wait
// (opening a document) gets the head after the election rather than an
// error; one that cannot (a chat Join, which holds up its stream) passes a
// short ctx.
func (l *Log) Head(ctx context.Context, room string) (store.Head, error) {
	ctx, cancel := context.WithTimeout(ctx, max(headWait, l.cfg.Timeout))
	defer cancel()
	var s jetstream.Stream
	var err error
	for {
		if s, err = l.stream(ctx, room); err == nil {
			break
		}
		t := time.NewTimer(headRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return store.Head{}, err
		case <-t.C:
		}
	}
	st := s.CachedInfo().State
	h := store.Head{Last: st.LastSeq}
	if st.Msgs > 0 {
		h.Oldest = st.FirstSeq
	}
	return h, nil
}

// Publish appends payload to room's log with de-duplication key key and
// returns without waiting. done is called exactly once, on the acker
// goroutine, in Publish order: with the seq JetStream stored the message at,
// or with duplicate set and the seq of the first copy when key was stored
// before, or with an error (the message may or may not be stored: resend it
// with the same key). done must not block.
func (l *Log) Publish(room, key string, payload []byte, done func(seq uint64, duplicate bool, err error)) {
	l.publish(room, key, payload, nil, done)
}

// Append is Publish with optimistic concurrency: payload is stored only if
// room's log ends at seq expectLast (0: empty), so it lands at expectLast+1.
// done is called as for Publish, with ErrConflict when the log had grown
// past expectLast (nothing stored) and with duplicate set when key was
// stored before, wherever the log ended. This is how a writer whose entry
// depends on everything before it (an OT operation transformed against the
// document's history) lets JetStream assign its seq without a second
// sequencer of ours.
func (l *Log) Append(room, key string, payload []byte, expectLast uint64, done func(seq uint64, duplicate bool, err error)) {
	l.publish(room, key, payload, &expectLast, done)
}

// publish is Publish, and Append when expectLast is set.
func (l *Log) publish(room, key string, payload []byte, expectLast *uint64, done func(seq uint64, duplicate bool, err error)) {
	tok := keyToken(key)
	subject := l.subjectRoot(room) + "." + tok
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(tok), jetstream.WithExpectLastSequencePerSubject(0)}
	kind := pubPlain
	if expectLast != nil {
		opts = append(opts, jetstream.WithExpectLastSequence(*expectLast))
		kind = pubAppend
	}
	l.send(room, subject, payload, opts, kind, done)
}

// send publishes asynchronously and queues the acknowledgement for the
// acker, which calls done.
func (l *Log) send(room, subject string, payload []byte, opts []jetstream.PublishOpt, kind pubKind, done func(seq uint64, duplicate bool, err error)) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		done(0, false, ErrClosed)
		return
	}
	f, err := l.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: payload}, opts...)
	if err != nil {
		done(0, false, fmt.Errorf("publish to %s: %w", subject, err))
		return
	}
	l.acks <- pendingPub{f: f, stream: l.StreamName(room), subject: subject, kind: kind, done: done}
}

// Lookup returns the seq at which key was stored in room's log, if the log
// still retains it.
func (l *Log) Lookup(ctx context.Context, room, key string) (seq uint64, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	s, err := l.stream(ctx, room)
	if err != nil {
		return 0, false, err
	}
	m, err := s.GetLastMsgForSubject(ctx, l.subjectRoot(room)+"."+keyToken(key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up a key in room %q (stream %s): %w", room, l.StreamName(room), err)
	}
	return m.Sequence, true, nil
}

// acker resolves publishes in order. It owns nothing but the channel's
// receive side and returns when acks is closed and drained.
func (l *Log) acker() {
	defer close(l.done)
	for p := range l.acks {
		select {
		case pa := <-p.f.Ok():
			p.done(pa.Sequence, pa.Duplicate, nil)
		case err := <-p.f.Err():
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
				// For a PublishAfter: the writer's newest entry is elsewhere.
				// Otherwise the key's subject already holds a message (a
				// resend after the Duplicates window: its seq is that
				// message's), or, for an Append, the log has grown past the
				// expected seq.
				if p.kind == pubWriter {
					p.done(0, false, ErrWriterMoved)
					continue
				}
				seq, lerr := l.lastOnSubject(p.stream, p.subject)
				if p.kind == pubAppend && errors.Is(lerr, jetstream.ErrMsgNotFound) {
					p.done(0, false, ErrConflict)
					continue
				}
				if lerr != nil {
					p.done(0, false, fmt.Errorf("resend detected on %s but its first copy could not be read: %w", p.subject, lerr))
				} else {
					p.done(seq, true, nil)
				}
				continue
			}
			p.done(0, false, fmt.Errorf("publish to %s: %w", p.subject, err))
		}
	}
}

func (l *Log) lastOnSubject(stream, subject string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// rangeBatch is how many messages one fetch of a Range asks for.
const rangeBatch = 256

// Range calls fn for each retained message of room with from <= seq <= to,
// in order, through a short-lived consumer that Range deletes before
// returning (see readConsumer: a caller that must not wait for a stream
// leader passes a short ctx). It stops at fn's first error and returns it.
// Messages below the stream's first retained seq are skipped (Head.Oldest
// says where it is).
func (l *Log) Range(ctx context.Context, room string, from, to uint64, fn func(seq uint64, payload []byte) error) error {
	if from == 0 {
		from = 1
	}
	if from > to {
		return nil
	}
	name := l.StreamName(room)
	next := from
	var fnErr error
	for attempt := 1; ; attempt++ {
		err := l.rangeOnce(ctx, name, &next, to, fn, &fnErr)
		if err == nil || fnErr != nil {
			return fnErr
		}
		if attempt == rangeAttempts || ctx.Err() != nil {
			return fmt.Errorf("read room %q (stream %s) from seq %d: %w", room, name, next, err)
		}
	}
}

// rangeAttempts bounds how many consumers one Range uses: a consumer that
// stops answering (its server died, or it was placed where nobody answers
// for it: "no responders") is replaced, starting where it stopped.
const rangeAttempts = 3

// rangeOnce is Range through one consumer, from *next (advanced as fn is
// called; fn's error goes to *fnErr and ends the read).
func (l *Log) rangeOnce(ctx context.Context, name string, next *uint64, to uint64, fn func(seq uint64, payload []byte) error, fnErr *error) error {
	wait := min(l.cfg.Timeout, leaderReadTimeout)
	cons, err := l.readConsumer(ctx, name, jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   *next,
	})
	if err != nil {
		return err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
		_ = l.js.DeleteConsumer(dctx, name, cons.CachedInfo().Name)
		dcancel()
	}()
	for *next <= to && *fnErr == nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		want := min(to-*next+1, rangeBatch)
		batch, err := cons.Fetch(int(want), jetstream.FetchMaxWait(wait))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() { // read to the end even after fn failed
			n++
			md, err := m.Metadata()
			if err != nil || *fnErr != nil {
				continue
			}
			seq := md.Sequence.Stream
			if seq < *next || seq > to {
				continue
			}
			*next = seq + 1
			*fnErr = fn(seq, m.Data())
		}
		if err := batch.Error(); err != nil && *fnErr == nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no message at or after seq %d within %v", *next, wait)
		}
	}
	return nil
}

// Close refuses further publishes, stops every Follow feed and waits
// (bounded by Timeout plus a second) for the acknowledgements of those in
// flight, whose callbacks run before Close returns, and for the feeds'
// goroutines and consumer deletions.
// The NATS connection stays open: its owner closes it.
func (l *Log) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.acks)
	}
	l.mu.Unlock()
	l.feedsMu.Lock()
	for f := range l.feeds {
		f.stop()
	}
	l.feedsMu.Unlock()
	done := make(chan struct{})
	go func() {
		<-l.done
		l.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(l.cfg.Timeout + time.Second):
		return errors.New("cluster log close: publish acknowledgements or consumer deletions still pending")
	}
}

// Consumers returns how many consumers room's stream has (operations and
// tests: each instance with members in the room holds one).
func (l *Log) Consumers(ctx context.Context, room string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	s, err := l.js.Stream(ctx, l.StreamName(room))
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Consumers, nil
}
