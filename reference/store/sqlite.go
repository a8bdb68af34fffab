package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

var (
	_ Store = (*SQLite)(nil)
	_ Store = (*Memory)(nil)
)

// ErrConflict is wrapped in the error an Append callback gets when the
// record's seq is not above its stream's last stored one, or its (stream,
// key) is already stored. Only that record fails; the others of its batch
// are committed.
var ErrConflict = errors.New("record conflicts with a stored one (same stream and a seq not above its last, or same stream and key)")

// rangePage is how many chunks Range reads per query; the read snapshot is
// released between pages, so fn never runs while a read transaction is open.
const rangePage = 16

// SQLite is a durable Store in one SQLite file (WAL journal,
// synchronous=FULL).
//
// One writer goroutine owns the write connection. Append and PutSnapshot put
// the operation on a bounded queue and return; the writer takes everything
// queued (up to WithMaxBatch), writes it in one transaction, commits (one
// fsync for the whole batch: group commit) and then calls each callback in
// queue order, from the writer goroutine. When the queue is full, Append and
// PutSnapshot block until the writer takes the next batch (back-pressure).
// Callbacks must not block and must not call Append or PutSnapshot of the
// same store (the writer would wait for itself once the queue is full).
//
// Reads go through a separate pool of read connections and see committed
// data only, so a record is readable once its callback has been called.
type SQLite struct {
	path string
	cfg  sqliteConfig

	// mu guards closed and the sends on queue: Append holds it shared while
	// it sends (possibly blocking on a full queue); Close takes it
	// exclusively to set closed and close queue, so no send can follow.
	mu     sync.RWMutex
	closed bool
	queue  chan sqliteOp

	// writer is owned by the writer goroutine until writerDone is closed.
	writer     *sqliteWriter
	writerDone chan struct{}

	rdb        *sql.DB // read pool
	headStmt   *sql.Stmt
	rangeStmt  *sql.Stmt
	keyStmt    *sql.Stmt
	snapStmt   *sql.Stmt
	readClosed atomic.Bool

	closeOnce sync.Once
	closeErr  error
}

// sqliteOp is one queued Append (snap nil) or PutSnapshot (snap set).
type sqliteOp struct {
	rec  Record
	snap *Snapshot
	err  error // set before queueing when the op cannot be stored
	done func(error)
}

// OpenSQLite opens (creating if missing) the store in the SQLite file at
// path and starts its writer goroutine; Close stops it. It fails when path
// cannot be opened or holds something other than a bidikit store, with an
// error naming path.
func OpenSQLite(path string, opts ...SQLiteOption) (*SQLite, error) {
	cfg := defaultSQLiteConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open %s: is a directory, want a database file", path)
	}
	if _, err := os.Stat(filepath.Dir(abs)); err != nil {
		return nil, fmt.Errorf("open %s: directory: %w", path, err)
	}
	busy := strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10)

	w, err := openWriter(path, dsn(abs, url.Values{"_busy_timeout": {busy}}), cfg)
	if err != nil {
		return nil, err
	}
	s := &SQLite{
		path:       path,
		cfg:        cfg,
		queue:      make(chan sqliteOp, cfg.queue),
		writer:     w,
		writerDone: make(chan struct{}),
	}
	if err := s.openReaders(dsn(abs, url.Values{"_busy_timeout": {busy}, "_query_only": {"1"}})); err != nil {
		_ = s.closeReaders()
		_ = w.close()
		return nil, err
	}
	go s.run()
	return s, nil
}

// dsn is the driver name of the file at abs with the driver's parameters.
// The URI form keeps '?' and '#' in file names working.
func dsn(abs string, params url.Values) string {
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: params.Encode()}
	return u.String()
}

// openWriter opens the write connection, switches it to WAL with
// synchronous=FULL, checks or creates the schema and prepares the writer's
// statements.
func openWriter(path, name string, cfg sqliteConfig) (_ *sqliteWriter, err error) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	w := &sqliteWriter{path: path, db: db, cfg: cfg, stmts: map[stmtKey]*sql.Stmt{},
		streams: map[string]*pending{}, touched: map[string]uint64{}}
	defer func() {
		if err != nil {
			_ = w.close()
		}
	}()
	if w.conn, err = db.Conn(ctx); err != nil {
		return nil, openErr(path, "connect", err)
	}
	var mode string
	if err := w.conn.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return nil, openErr(path, "switch to WAL journal", err)
	}
	if mode != "wal" {
		return nil, fmt.Errorf("open %s: journal mode stays %q, want wal", path, mode)
	}
	if _, err := w.conn.ExecContext(ctx, "PRAGMA synchronous=FULL"); err != nil {
		return nil, openErr(path, "set synchronous=FULL", err)
	}
	// Temporary files (statement journals of the retention delete and the
	// snapshot upsert) stay in memory: they are never needed after a crash,
	// and on disk each page costs a write system call.
	if _, err := w.conn.ExecContext(ctx, "PRAGMA temp_store=MEMORY"); err != nil {
		return nil, openErr(path, "set temp_store=MEMORY", err)
	}
	if err := w.schema(ctx); err != nil {
		return nil, err
	}
	if err := w.prepare(ctx); err != nil {
		return nil, fmt.Errorf("open %s: prepare statements: %w", path, err)
	}
	return w, nil
}

// openErr wraps err from step while opening path, naming a file that is no
// database at all.
func openErr(path, step string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_NOTADB {
		return fmt.Errorf("open %s: not a bidikit database: %w", path, err)
	}
	return fmt.Errorf("open %s: %s: %w", path, step, err)
}

// openReaders opens the read pool and prepares the read statements.
func (s *SQLite) openReaders(name string) error {
	db, err := sql.Open("sqlite", name)
	if err != nil {
		return fmt.Errorf("open %s: read pool: %w", s.path, err)
	}
	s.rdb = db
	db.SetMaxOpenConns(s.cfg.readConns)
	db.SetMaxIdleConns(s.cfg.readConns)
	for _, p := range []struct {
		dst *(*sql.Stmt)
		q   string
	}{
		{&s.headStmt, `SELECT
			(SELECT first FROM chunks WHERE stream = ?1 ORDER BY first ASC LIMIT 1),
			(SELECT last FROM chunks WHERE stream = ?1 ORDER BY first DESC LIMIT 1),
			(SELECT seq FROM snapshots WHERE stream = ?1)`},
		// The chunks holding seqs from ?2 to ?3: from the one that starts at
		// or before ?2 on.
		{&s.rangeStmt, `SELECT first, last, data FROM chunks
			WHERE stream = ?1 AND first <= ?3 AND first >= coalesce(
				(SELECT first FROM chunks WHERE stream = ?1 AND first <= ?2 ORDER BY first DESC LIMIT 1), ?2)
			ORDER BY first LIMIT ?4`},
		{&s.keyStmt, `SELECT seq FROM keys WHERE stream = ?1 AND key = ?2`},
		{&s.snapStmt, `SELECT seq, data FROM snapshots WHERE stream = ?1`},
	} {
		if *p.dst, err = db.Prepare(p.q); err != nil {
			return fmt.Errorf("open %s: prepare read statements: %w", s.path, err)
		}
	}
	return nil
}

func (s *SQLite) closeReaders() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.headStmt, s.rangeStmt, s.keyStmt, s.snapStmt} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.rdb != nil {
		errs = append(errs, s.rdb.Close())
	}
	return errors.Join(errs...)
}

// Append implements Store. It copies rec.Payload, so the caller may reuse
// it. It blocks only while the queue is full (see WithQueue).
func (s *SQLite) Append(rec Record, done func(error)) {
	rec.Payload = bytes.Clone(rec.Payload)
	op := sqliteOp{rec: rec, done: done}
	if rec.Seq > math.MaxInt64 {
		op.err = fmt.Errorf("store %s: append %q seq %d: seq above %d", s.path, rec.Stream, rec.Seq, int64(math.MaxInt64))
	}
	s.enqueue(op)
}

// PutSnapshot implements Store. It copies snap.Data and is committed after
// every Append queued before it.
func (s *SQLite) PutSnapshot(snap Snapshot, done func(error)) {
	snap.Data = bytes.Clone(snap.Data)
	op := sqliteOp{snap: &snap, done: done}
	if snap.Seq > math.MaxInt64 {
		op.err = fmt.Errorf("store %s: snapshot %q seq %d: seq above %d", s.path, snap.Stream, snap.Seq, int64(math.MaxInt64))
	}
	s.enqueue(op)
}

// enqueue hands op to the writer, blocking while the queue is full, or
// calls op.done(ErrClosed) after Close.
func (s *SQLite) enqueue(op sqliteOp) {
	if op.done == nil {
		op.done = func(error) {}
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		op.done(ErrClosed)
		return
	}
	s.queue <- op
	s.mu.RUnlock()
}

// Head implements Store. A stream with a snapshot but no records reports
// the snapshot's seq as Last, like Memory. With WithRetain, Oldest is the
// oldest of the newest n seqs even while older records still share a chunk
// with them.
func (s *SQLite) Head(stream string) (Head, error) {
	if s.readClosed.Load() {
		return Head{}, ErrClosed
	}
	var lo, hi, snap sql.NullInt64
	if err := s.headStmt.QueryRow(stream).Scan(&lo, &hi, &snap); err != nil {
		return Head{}, s.readErr("head", stream, err)
	}
	if !hi.Valid {
		if snap.Valid {
			return Head{Last: uint64(snap.Int64)}, nil
		}
		return Head{}, nil
	}
	h := Head{Last: uint64(hi.Int64), Oldest: uint64(lo.Int64)}
	if n := uint64(s.cfg.retain); n > 0 && h.Last >= n {
		h.Oldest = max(h.Oldest, h.Last-n+1)
	}
	return h, nil
}

// retainedFrom is the oldest seq of stream that reads may return: 0
// without WithRetain.
func (s *SQLite) retainedFrom(stream string) (uint64, error) {
	if s.cfg.retain <= 0 {
		return 0, nil
	}
	h, err := s.Head(stream)
	return h.Oldest, err
}

// errStopRange ends decoding a chunk past a Range's end.
var errStopRange = errors.New("past the range")

// Range implements Store. It reads in pages of chunks and calls fn with no
// read transaction open, so a slow fn holds no database resources.
func (s *SQLite) Range(stream string, from, to uint64, fn func(Record) error) error {
	if to > math.MaxInt64 {
		to = math.MaxInt64
	}
	oldest, err := s.retainedFrom(stream)
	if err != nil {
		return err
	}
	from = max(from, oldest)
	var page []storedChunk
	for from <= to {
		if s.readClosed.Load() {
			return ErrClosed
		}
		if page, err = s.rangePage(stream, from, to, page[:0]); err != nil {
			return err
		}
		for _, c := range page {
			var fnErr error
			err := decodeChunk(stream, c.first, c.data, func(r Record) error {
				switch {
				case r.Seq < from:
					return nil
				case r.Seq > to:
					return errStopRange
				}
				fnErr = fn(r)
				return fnErr
			})
			switch {
			case errors.Is(err, errStopRange):
				return nil
			case fnErr != nil:
				return fnErr
			case err != nil:
				return s.readErr("range", stream, err)
			}
		}
		if len(page) < rangePage {
			return nil
		}
		last := page[len(page)-1].last
		if last >= to {
			return nil
		}
		from = last + 1
	}
	return nil
}

// storedChunk is a chunk as read back.
type storedChunk struct {
	first, last uint64
	data        []byte
}

func (s *SQLite) rangePage(stream string, from, to uint64, page []storedChunk) ([]storedChunk, error) {
	rows, err := s.rangeStmt.Query(stream, int64(from), int64(to), rangePage)
	if err != nil {
		return nil, s.readErr("range", stream, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c storedChunk
		var first, last int64
		if err := rows.Scan(&first, &last, &c.data); err != nil {
			return nil, s.readErr("range", stream, err)
		}
		c.first, c.last = uint64(first), uint64(last)
		page = append(page, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.readErr("range", stream, err)
	}
	return page, nil
}

// FindKey implements Store.
func (s *SQLite) FindKey(stream, key string) (uint64, bool, error) {
	if s.readClosed.Load() {
		return 0, false, ErrClosed
	}
	if key == "" {
		return 0, false, nil
	}
	var seq int64
	switch err := s.keyStmt.QueryRow(stream, key).Scan(&seq); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, false, nil
	case err != nil:
		return 0, false, s.readErr("find key", stream, err)
	}
	oldest, err := s.retainedFrom(stream)
	if err != nil {
		return 0, false, err
	}
	if uint64(seq) < oldest { // dropped by retention; its key row may linger a commit
		return 0, false, nil
	}
	return uint64(seq), true, nil
}

// LatestSnapshot implements Store.
func (s *SQLite) LatestSnapshot(stream string) (Snapshot, bool, error) {
	if s.readClosed.Load() {
		return Snapshot{}, false, ErrClosed
	}
	snap := Snapshot{Stream: stream}
	var seq int64
	switch err := s.snapStmt.QueryRow(stream).Scan(&seq, &snap.Data); {
	case errors.Is(err, sql.ErrNoRows):
		return Snapshot{}, false, nil
	case err != nil:
		return Snapshot{}, false, s.readErr("latest snapshot", stream, err)
	}
	snap.Seq = uint64(seq)
	return snap, true, nil
}

// readErr wraps a read failure; a read racing Close gets ErrClosed.
func (s *SQLite) readErr(what, stream string, err error) error {
	if s.readClosed.Load() {
		return ErrClosed
	}
	return fmt.Errorf("store %s: %s %q: %w", s.path, what, stream, err)
}

// Durable implements Store: committed records survive a crash.
func (s *SQLite) Durable() bool { return true }

// Close implements Store. It stops accepting operations (later ones get
// ErrClosed), waits until the writer has committed everything queued and
// called its callbacks, then closes the database. It is safe to call more
// than once and from several goroutines; every call returns the first
// call's result once the store is closed.
func (s *SQLite) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
		<-s.writerDone
		s.readClosed.Store(true)
		if err := errors.Join(s.writer.close(), s.closeReaders()); err != nil {
			s.closeErr = fmt.Errorf("close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}
