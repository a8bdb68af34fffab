package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bidikit/bidikit/reference/store"
)

// Writer-ordered publishes keep one writer's entries of a room in the order
// the writer numbered them, across instances and across the death of the
// instance that stored the newest one, without a sequencer of ours: the
// order lives in the stream.
//
// Every entry of writer W goes to one subject, bidikit.<kind>.<room>.w<h>
// (h: a hash of W). PublishAfter sends it with
// Nats-Expected-Last-Subject-Sequence set to the seq of W's newest entry, so
// JetStream stores it only right after the entry its publisher saw last, and
// refuses it while another entry of W is being stored. WriterLast reads W's
// newest entry with a direct get (one subject: no scan; any replica answers,
// so it works while a leader is being elected, and one that lags only makes
// the next PublishAfter fail its condition and read again). Resends inside
// the Duplicates window are answered through Nats-Msg-Id, as with Publish;
// WriterKey finds older ones by scanning W's entries.

// ErrWriterMoved is passed to a PublishAfter callback when the writer's
// newest entry in the log is not at the seq given: another instance stored
// an entry of the writer meanwhile, or one is being stored. Nothing was
// stored; read WriterLast again and decide. It wraps store.ErrConflict.
var ErrWriterMoved = fmt.Errorf("the writer's newest entry is not at the expected seq: %w", store.ErrConflict)

// writerSubject is the subject of writer's entries in room's log ("w" keeps
// it apart from the de-duplication key subjects, which are hex).
func (l *Log) writerSubject(room, writer string) string {
	return l.subjectRoot(room) + ".w" + keyToken(writer)
}

// PublishAfter appends payload, an entry of writer with de-duplication key
// key, to room's log only if writer's newest entry there is at seq
// writerLast (0: the log holds none of writer's). It returns without
// waiting; done is called exactly once, on the acker goroutine, in publish
// order: with the seq the entry got; with duplicate and the first copy's seq
// when key was stored within the Duplicates window; with an error wrapping
// ErrWriterMoved when the writer's newest entry is elsewhere (nothing
// stored); or with another error (the entry may or may not be stored: read
// WriterLast, and WriterKey, before deciding). done must not block.
func (l *Log) PublishAfter(room, writer, key string, payload []byte, writerLast uint64, done func(seq uint64, duplicate bool, err error)) {
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(keyToken(key)), jetstream.WithExpectLastSequencePerSubject(writerLast)}
	l.send(room, l.writerSubject(room, writer), payload, opts, pubWriter, done)
}

// WriterLast returns writer's newest entry in room's log: its seq and
// payload; found is false when the log retains none of writer's entries. A
// replica answers (a direct get), so the answer may be older than the
// leader's: callers rely on PublishAfter's condition, not on this read, for
// the order.
func (l *Log) WriterLast(ctx context.Context, room, writer string) (seq uint64, payload []byte, found bool, err error) {
	seq, payload, found, err = l.directLast(ctx, room, l.writerSubject(room, writer))
	if err != nil {
		return 0, nil, false, fmt.Errorf("read a writer's newest entry in room %q (stream %s): %w", room, l.StreamName(room), err)
	}
	return seq, payload, found, nil
}

// WriterKey returns the seq of writer's entry with de-duplication key key in
// room's log, if the log still retains it. It reads every retained entry of
// writer up to seq upTo (through a short-lived consumer, deleted before it
// returns): the answer for a resend that came after the Duplicates window,
// which is rare.
func (l *Log) WriterKey(ctx context.Context, room, writer, key string, upTo uint64) (seq uint64, found bool, err error) {
	want := keyToken(key)
	name := l.StreamName(room)
	errFound := errors.New("found")
	err = l.scan(ctx, room, l.writerSubject(room, writer), upTo, func(m jetstream.Msg, s uint64) error {
		if m.Headers().Get(jetstream.MsgIDHeader) == want {
			seq = s
			return errFound
		}
		return nil
	})
	switch {
	case errors.Is(err, errFound):
		return seq, true, nil
	case err != nil:
		return 0, false, fmt.Errorf("look for a writer's key in room %q (stream %s): %w", room, name, err)
	}
	return 0, false, nil
}

// scan calls fn for every retained message of room's stream on subject with
// seq <= upTo, in order, through a consumer that scan deletes before
// returning; it stops at fn's first error and returns it.
func (l *Log) scan(ctx context.Context, room, subject string, upTo uint64, fn func(m jetstream.Msg, seq uint64) error) error {
	name := l.StreamName(room)
	cons, err := l.readConsumer(ctx, name, jetstream.ConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, FilterSubject: subject})
	if err != nil {
		return err
	}
	defer func() {
		dctx, dcancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
		_ = l.js.DeleteConsumer(dctx, name, cons.CachedInfo().Name)
		dcancel()
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		pending := cons.CachedInfo().NumPending
		if info, err := cons.Info(ctx); err == nil {
			pending = info.NumPending
		}
		if pending == 0 {
			return nil
		}
		batch, err := cons.Fetch(int(min(pending, rangeBatch)), jetstream.FetchMaxWait(l.cfg.Timeout))
		if err != nil {
			return err
		}
		var fnErr error
		n := 0
		for m := range batch.Messages() { // read to the end even after fn failed
			n++
			md, err := m.Metadata()
			if err != nil || fnErr != nil {
				continue
			}
			if md.Sequence.Stream > upTo {
				fnErr = errScanDone
				continue
			}
			fnErr = fn(m, md.Sequence.Stream)
		}
		switch {
		case errors.Is(fnErr, errScanDone):
			return nil
		case fnErr != nil:
			return fnErr
		case batch.Error() != nil:
			return batch.Error()
		case n == 0:
			return fmt.Errorf("no message on %s within %v though %d are pending", subject, l.cfg.Timeout, pending)
		}
	}
}

// errScanDone ends a scan that passed its last seq.
var errScanDone = errors.New("scan done")

// directLast returns the newest message of room's stream on subject through
// a direct get, which every replica of the stream answers. While nobody
// answers (the stream is missing: it is created, empty; or it was created a
// moment ago and its replicas do not serve direct gets yet) it asks again
// every directRetry for up to leaderReadTimeout.
func (l *Log) directLast(ctx context.Context, room, subject string) (uint64, []byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, max(leaderReadTimeout, l.cfg.Timeout))
	defer cancel()
	deadline := time.Now().Add(leaderReadTimeout)
	for attempt := 0; ; attempt++ {
		seq, data, found, err := l.directGet(ctx, room, subject)
		if !errors.Is(err, nats.ErrNoResponders) {
			return seq, data, found, err
		}
		if attempt == 0 {
			if _, serr := l.stream(ctx, room); serr != nil {
				return 0, nil, false, serr
			}
		}
		if time.Now().After(deadline) {
			return 0, nil, false, err
		}
		t := time.NewTimer(directRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, nil, false, err
		case <-t.C:
		}
	}
}

// directRetry paces directLast while no replica answers.
const directRetry = 100 * time.Millisecond

// directGet is one DIRECT.GET request for the last message on subject.
func (l *Log) directGet(ctx context.Context, room, subject string) (uint64, []byte, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, min(l.cfg.Timeout, leaderReadTimeout))
	defer cancel()
	m, err := l.js.Conn().RequestWithContext(ctx, l.apiPrefix+"DIRECT.GET."+l.StreamName(room)+"."+subject, nil)
	if err != nil {
		return 0, nil, false, err
	}
	if st := m.Header.Get("Status"); st != "" && len(m.Data) == 0 {
		if st == "404" {
			return 0, nil, false, nil
		}
		return 0, nil, false, fmt.Errorf("direct get: status %s %s", st, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return 0, nil, false, fmt.Errorf("direct get: no sequence in the answer: %w", err)
	}
	return seq, m.Data, true, nil
}
