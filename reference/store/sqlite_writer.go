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

// insertRows is the most records one INSERT statement carries (5 bound
// values each, well under SQLite's variable limit).
const insertRows = 256

// retainChunk is the most records retention deletes per stream per commit.
const retainChunk = 1000

// sqliteWriter is the write side of a SQLite store: the write connection
// and its prepared statements. After OpenSQLite it is owned by the writer
// goroutine (SQLite.run); Close uses it only after that goroutine ended.
type sqliteWriter struct {
	path string
	cfg  sqliteConfig
	db   *sql.DB
	conn *sql.Conn

	stmts   map[int]*sql.Stmt // multi-row INSERT OR ROLLBACK by row count (powers of two)
	one     *sql.Stmt         // single-row INSERT (insertEach)
	snap    *sql.Stmt         // snapshot upsert
	retain  *sql.Stmt         // retention delete
	args    []any             // bound values of the INSERT being built
	rows    int               // records in args
	errs    []error           // per-op result of the current batch
	touched map[string]uint64 // stream -> highest seq committed by the current batch
}

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
	var err error
	w.snap, err = w.conn.PrepareContext(ctx, `INSERT INTO snapshots (stream, seq, data) VALUES (?1, ?2, ?3)
		ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, data = excluded.data`)
	if err != nil {
		return err
	}
	w.retain, err = w.conn.PrepareContext(ctx, `DELETE FROM records WHERE stream = ?1 AND seq IN
		(SELECT seq FROM records WHERE stream = ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3)`)
	if err != nil {
		return err
	}
	for n := 1; n <= insertRows; n *= 2 {
		if _, err := w.insert(n); err != nil {
			return err
		}
	}
	w.one, err = w.conn.PrepareContext(ctx, `INSERT INTO records (stream, seq, key, unix_nanos, payload) VALUES (?,?,?,?,?)`)
	if err != nil {
		return err
	}
	w.args = make([]any, 0, 5*insertRows)
	return nil
}

// insert returns the prepared INSERT of n records. A conflict rolls the
// whole transaction back (OR ROLLBACK), so SQLite keeps no statement journal
// for it: a multi-row statement that could fail half-way (OR ABORT) copies
// every page it changes first. commit then writes the batch again record
// by record (insertEach).
func (w *sqliteWriter) insert(n int) (*sql.Stmt, error) {
	if st := w.stmts[n]; st != nil {
		return st, nil
	}
	var b strings.Builder
	b.WriteString("INSERT OR ROLLBACK INTO records (stream, seq, key, unix_nanos, payload) VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?)")
	}
	st, err := w.conn.PrepareContext(context.Background(), b.String())
	if err != nil {
		return nil, err
	}
	w.stmts[n] = st
	return st, nil
}

// commit writes batch in one transaction and calls every callback in
// order. When a record conflicts with a stored one, it writes the batch
// again record by record so that only the conflicting records fail.
func (w *sqliteWriter) commit(batch []sqliteOp) {
	w.errs = w.errs[:0]
	for _, op := range batch {
		w.errs = append(w.errs, op.err)
	}
	err := w.tx(func() error { return w.insertBatch(batch) })
	if err != nil && isConstraint(err) {
		err = w.tx(func() error { return w.insertEach(batch) })
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

// insertBatch writes the records of batch with multi-row INSERTs and the
// snapshots with upserts, in batch order.
func (w *sqliteWriter) insertBatch(batch []sqliteOp) error {
	w.args, w.rows = w.args[:0], 0
	for i := range batch {
		op := &batch[i]
		switch {
		case op.err != nil:
		case op.snap != nil:
			if err := w.flush(); err != nil {
				return err
			}
			if _, err := w.snap.Exec(op.snap.Stream, int64(op.snap.Seq), op.snap.Data); err != nil {
				return fmt.Errorf("snapshot %q seq %d: %w", op.snap.Stream, op.snap.Seq, err)
			}
		default:
			r := &op.rec
			w.args = append(w.args, r.Stream, int64(r.Seq), r.Key, r.UnixNanos, r.Payload)
			if w.rows++; w.rows == insertRows {
				if err := w.flush(); err != nil {
					return err
				}
			}
		}
	}
	return w.flush()
}

// flush executes the records collected in args, largest statements first.
func (w *sqliteWriter) flush() error {
	off := 0
	for w.rows > 0 {
		n := insertRows
		for n > w.rows {
			n /= 2
		}
		st, err := w.insert(n)
		if err != nil {
			return err
		}
		if _, err := st.Exec(w.args[off : off+5*n]...); err != nil {
			return fmt.Errorf("insert %d records: %w", n, err)
		}
		off += 5 * n
		w.rows -= n
	}
	clear(w.args)
	w.args = w.args[:0]
	return nil
}

// insertEach writes batch one statement per operation, marking operations
// that conflict with stored records in w.errs; SQLite undoes only the
// failed statement, the transaction goes on.
func (w *sqliteWriter) insertEach(batch []sqliteOp) error {
	one := w.one
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
			_, err := one.Exec(r.Stream, int64(r.Seq), r.Key, r.UnixNanos, r.Payload)
			switch {
			case isConstraint(err):
				w.errs[i] = fmt.Errorf("store %s: append %q seq %d key %q: %w: %v", w.path, r.Stream, r.Seq, r.Key, ErrConflict, err)
			case err != nil:
				return fmt.Errorf("insert %q seq %d: %w", r.Stream, r.Seq, err)
			}
		}
	}
	return nil
}

// applyRetention deletes, per stream written by the batch, records older
// than the newest cfg.retain, at most retainChunk of them.
func (w *sqliteWriter) applyRetention() error {
	for stream, last := range w.touched {
		if last <= uint64(w.cfg.retain) {
			continue
		}
		if _, err := w.retain.Exec(stream, int64(last-uint64(w.cfg.retain)), retainChunk); err != nil {
			return fmt.Errorf("retention of %q: %w", stream, err)
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
	for _, st := range []*sql.Stmt{w.one, w.snap, w.retain} {
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
