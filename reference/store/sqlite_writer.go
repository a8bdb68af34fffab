package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// insertRows is the most rows one multi-row INSERT carries (at most 4
// bound values each, well under SQLite's variable limit).
const insertRows = 256

// retainChunk is the most chunks, and the most keys, retention deletes per
// stream per commit.
const retainChunk = 1000

// sqliteWriter is the write side of a SQLite store: the write connection
// and its prepared statements. After OpenSQLite it is owned by the writer
// goroutine (SQLite.run); Close uses it only after that goroutine ended.
type sqliteWriter struct {
	path string
	cfg  sqliteConfig
	db   *sql.DB
	conn *sql.Conn

	stmts     map[stmtKey]*sql.Stmt // multi-row INSERT OR ROLLBACK by table and row count (powers of two)
	oneKey    *sql.Stmt             // single-row key INSERT (keys one by one, after a conflict)
	lastStmt  *sql.Stmt             // a stream's last stored seq
	snap      *sql.Stmt             // snapshot upsert
	retain    *sql.Stmt             // retention delete of chunks
	retainKey *sql.Stmt             // retention delete of keys
	args      []any                 // bound values of the INSERT being built
	rows      int                   // rows in args
	errs      []error               // per-op result of the current batch
	streams   map[string]*pending   // the current batch's chunks by stream
	order     []*pending            // streams in the order the batch first names them
	touched   map[string]uint64     // stream -> highest seq committed by the current batch
}

// pending is what the current batch writes to one stream: its chunks, and
// the seq the next record must be above.
type pending struct {
	stream string
	last   uint64 // the stream's highest seq, stored or in chunks
	chunks []chunk
}

// stmtKey names a prepared multi-row INSERT.
type stmtKey struct {
	table *insertTable
	rows  int
}

// insertTable is a table the writer fills with multi-row INSERTs.
type insertTable struct {
	name    string
	columns string
	width   int // bound values per row
}

var (
	chunksTable = &insertTable{name: "chunks", columns: "(stream, first, last, data)", width: 4}
	keysTable   = &insertTable{name: "keys", columns: "(stream, key, seq)", width: 3}
)

// run is the writer goroutine: it takes batches off the queue, commits each
// in one transaction and calls the callbacks in queue order, until Close
// closes the queue and it is drained.
func (s *SQLite) run() {
	defer close(s.writerDone)
	batch := make([]sqliteOp, 0, s.cfg.maxBatch)
	for {
		op, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], op)
		open := s.fill(&batch)
		s.writer.commit(batch)
		clear(batch) // drop payload references while idle
		if !open {
			return
		}
	}
}

// fill adds what is already queued to batch without waiting, up to the
// max batch size. It reports false when the queue is closed and drained.
func (s *SQLite) fill(batch *[]sqliteOp) bool {
	for len(*batch) < s.cfg.maxBatch {
		select {
		case op, ok := <-s.queue:
			if !ok {
				return false
			}
			*batch = append(*batch, op)
		default:
			return true
		}
	}
	return true
}

// prepare prepares the statements the writer uses on every batch.
func (w *sqliteWriter) prepare(ctx context.Context) error {
	for _, p := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&w.snap, `INSERT INTO snapshots (stream, seq, data) VALUES (?1, ?2, ?3)
			ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, data = excluded.data`},
		{&w.retain, `DELETE FROM chunks WHERE stream = ?1 AND first IN
			(SELECT first FROM chunks WHERE stream = ?1 AND last <= ?2 ORDER BY first LIMIT ?3)`},
		{&w.retainKey, `DELETE FROM keys WHERE stream = ?1 AND key IN
			(SELECT key FROM keys WHERE stream = ?1 AND seq <= ?2 LIMIT ?3)`},
		{&w.oneKey, `INSERT INTO keys (stream, key, seq) VALUES (?1, ?2, ?3)`},
		{&w.lastStmt, `SELECT last FROM chunks WHERE stream = ?1 ORDER BY first DESC LIMIT 1`},
	} {
		var err error
		if *p.dst, err = w.conn.PrepareContext(ctx, p.q); err != nil {
			return err
		}
	}
	for _, t := range []*insertTable{chunksTable, keysTable} {
		for n := 1; n <= insertRows; n *= 2 {
			if _, err := w.insert(t, n); err != nil {
				return err
			}
		}
	}
	w.args = make([]any, 0, 4*insertRows)
	return nil
}

// insert returns the prepared INSERT of n rows into t. A conflict rolls
// the whole transaction back (OR ROLLBACK), so SQLite keeps no statement
// journal for it: a multi-row statement that could fail half-way (OR ABORT)
// copies every page it changes first. commit then writes the batch again
// with its keys one by one (insertBatch's oneByOne).
func (w *sqliteWriter) insert(t *insertTable, n int) (*sql.Stmt, error) {
	k := stmtKey{t, n}
	if st := w.stmts[k]; st != nil {
		return st, nil
	}
	row := "(?" + strings.Repeat(",?", t.width-1) + ")"
	var b strings.Builder
	b.WriteString("INSERT OR ROLLBACK INTO " + t.name + " " + t.columns + " VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	st, err := w.conn.PrepareContext(context.Background(), b.String())
	if err != nil {
		return nil, err
	}
	w.stmts[k] = st
	return st, nil
}

// commit writes batch in one transaction and calls every callback in
// order. When a key conflicts with a stored one (or another of the batch),
// SQLite rolls the transaction back and commit writes the batch again with
// its keys one by one, so that only the conflicting records fail.
func (w *sqliteWriter) commit(batch []sqliteOp) {
	w.errs = w.errs[:0]
	for _, op := range batch {
		w.errs = append(w.errs, op.err)
	}
	err := w.tx(func() error { return w.insertBatch(batch, false) })
	if err != nil && isConstraint(err) {
		err = w.tx(func() error { return w.insertBatch(batch, true) })
	}
	if err != nil {
		err = fmt.Errorf("store %s: commit batch of %d operations: %w", w.path, len(batch), err)
		w.cfg.log.Error("store commit failed", "path", w.path, "ops", len(batch), "err", err)
		for i := range w.errs {
			if w.errs[i] == nil {
				w.errs[i] = err
			}
		}
	}
	for i, op := range batch {
		if w.errs[i] == nil && op.snap == nil && op.rec.Seq > w.touched[op.rec.Stream] {
			w.touched[op.rec.Stream] = op.rec.Seq
		}
	}
	for i, op := range batch {
		op.done(w.errs[i])
	}
	clear(w.errs)
	w.clearPending()
	if w.cfg.retain > 0 && len(w.touched) > 0 {
		if err := w.tx(w.applyRetention); err != nil {
			w.cfg.log.Error("store retention failed", "path", w.path, "err", err)
		}
	}
	clear(w.touched)
}

// tx runs fn in an immediate transaction and commits, rolling back when
// fn or the commit fails.
func (w *sqliteWriter) tx(fn func() error) error {
	ctx := context.Background()
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(); err != nil {
		w.rollback()
		return err
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		w.rollback()
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// rollback ends the open transaction, if SQLite has not already.
func (w *sqliteWriter) rollback() {
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

// insertBatch writes batch: the snapshots with upserts, the keys of the
// records (multi-row INSERTs, or one by one with oneByOne, marking the
// records whose key is stored already in w.errs), and each stream's records
// as chunks. A record whose seq is not above its stream's last one fails
// with ErrConflict and is not written.
func (w *sqliteWriter) insertBatch(batch []sqliteOp, oneByOne bool) error {
	w.clearPending()
	w.args, w.rows = w.args[:0], 0
	for i := range batch {
		op := &batch[i]
		switch {
		case op.err != nil:
		case op.snap != nil:
			if _, err := w.snap.Exec(op.snap.Stream, int64(op.snap.Seq), op.snap.Data); err != nil {
				return fmt.Errorf("snapshot %q seq %d: %w", op.snap.Stream, op.snap.Seq, err)
			}
		default:
			r := &op.rec
			p, err := w.pendingOf(r.Stream)
			if err != nil {
				return err
			}
			if r.Seq <= p.last {
				w.errs[i] = w.conflict(r, fmt.Sprintf("seq %d is not above the stream's last, %d", r.Seq, p.last))
				continue
			}
			if r.Key != "" {
				if oneByOne {
					_, err := w.oneKey.Exec(r.Stream, r.Key, int64(r.Seq))
					switch {
					case isConstraint(err):
						w.errs[i] = w.conflict(r, err.Error())
						continue
					case err != nil:
						return fmt.Errorf("insert key of %q seq %d: %w", r.Stream, r.Seq, err)
					}
				} else if err := w.addRow(keysTable, r.Stream, r.Key, int64(r.Seq)); err != nil {
					return err
				}
			}
			if n := len(p.chunks); n == 0 || p.chunks[n-1].full() {
				p.chunks = append(p.chunks, chunk{})
			}
			p.chunks[len(p.chunks)-1].add(r)
			p.last = r.Seq
		}
	}
	if err := w.flush(keysTable); err != nil {
		return err
	}
	for _, p := range w.order {
		for i := range p.chunks {
			c := &p.chunks[i]
			if err := w.addRow(chunksTable, p.stream, int64(c.first), int64(c.last), c.data); err != nil {
				return err
			}
		}
	}
	return w.flush(chunksTable)
}

// conflict is the error of a record that repeats a stored seq or key.
func (w *sqliteWriter) conflict(r *Record, why string) error {
	return fmt.Errorf("store %s: append %q seq %d key %q: %w: %s", w.path, r.Stream, r.Seq, r.Key, ErrConflict, why)
}

// pendingOf returns the current batch's chunks of stream, reading the
// stream's last stored seq the first time the batch names it.
func (w *sqliteWriter) pendingOf(stream string) (*pending, error) {
	if p := w.streams[stream]; p != nil {
		return p, nil
	}
	var last int64
	switch err := w.lastStmt.QueryRow(stream).Scan(&last); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read the last seq of %q: %w", stream, err)
	}
	p := &pending{stream: stream, last: uint64(last)}
	w.streams[stream] = p
	w.order = append(w.order, p)
	return p, nil
}

// clearPending forgets the current batch's chunks.
func (w *sqliteWriter) clearPending() {
	clear(w.streams)
	clear(w.order)
	w.order = w.order[:0]
}

// addRow adds one row of t to the INSERT being built (args and rows hold
// one table's rows at a time), executing it once it has insertRows.
func (w *sqliteWriter) addRow(t *insertTable, vals ...any) error {
	w.args = append(w.args, vals...)
	if w.rows++; w.rows == insertRows {
		return w.flush(t)
	}
	return nil
}

// flush executes the rows of t collected in args, largest statements
// first.
func (w *sqliteWriter) flush(t *insertTable) error {
	width := t.width
	off := 0
	for w.rows > 0 {
		n := insertRows
		for n > w.rows {
			n /= 2
		}
		st, err := w.insert(t, n)
		if err != nil {
			return err
		}
		if _, err := st.Exec(w.args[off : off+width*n]...); err != nil {
			return fmt.Errorf("insert %d rows into %s: %w", n, t.name, err)
		}
		off += width * n
		w.rows -= n
	}
	clear(w.args)
	w.args = w.args[:0]
	return nil
}

// applyRetention deletes, per stream written by the batch, the chunks
// whose records are all older than the newest cfg.retain and the keys of
// those records, at most retainChunk of each. Reads hide the records below
// the newest cfg.retain that share a chunk with newer ones.
func (w *sqliteWriter) applyRetention() error {
	for stream, last := range w.touched {
		if last <= uint64(w.cfg.retain) {
			continue
		}
		cut := int64(last - uint64(w.cfg.retain))
		if _, err := w.retain.Exec(stream, cut, retainChunk); err != nil {
			return fmt.Errorf("retention of %q: %w", stream, err)
		}
		if _, err := w.retainKey.Exec(stream, cut, retainChunk); err != nil {
			return fmt.Errorf("retention of the keys of %q: %w", stream, err)
		}
	}
	return nil
}

// close releases the write connection; the writer goroutine must be done.
func (w *sqliteWriter) close() error {
	var errs []error
	for _, st := range w.stmts {
		errs = append(errs, st.Close())
	}
	for _, st := range []*sql.Stmt{w.oneKey, w.lastStmt, w.snap, w.retain, w.retainKey} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if w.conn != nil {
		errs = append(errs, w.conn.Close())
	}
	errs = append(errs, w.db.Close())
	return errors.Join(errs...)
}

// isConstraint reports whether err is SQLite's constraint violation.
func isConstraint(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}
