package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// schemaVersion is the layout this build writes and reads, kept in the
// bidikit_meta table. Version 1 (one row per record) is migrated to it on
// open (migrateV1).
const schemaVersion = 2

// schema checks that the file is empty or a bidikit store of this version
// or of version 1 (which it migrates), and creates the tables that are
// missing, in one transaction.
func (w *sqliteWriter) schema(ctx context.Context) (err error) {
	if _, err := w.conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return openErr(w.path, "begin schema check", err)
	}
	defer func() {
		if err != nil {
			w.rollback()
		}
	}()
	var tables, metas int
	err = w.conn.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE name = 'bidikit_meta')
		FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).Scan(&tables, &metas)
	if err != nil {
		return openErr(w.path, "read schema", err)
	}
	switch {
	case metas == 1:
		var v string
		err := w.conn.QueryRowContext(ctx, `SELECT value FROM bidikit_meta WHERE name = 'schema_version'`).Scan(&v)
		if err != nil {
			return fmt.Errorf("open %s: not a bidikit database: read schema version: %w", w.path, err)
		}
		switch v {
		case strconv.Itoa(schemaVersion):
		case "1":
			if err := w.migrateV1(ctx); err != nil {
				return fmt.Errorf("open %s: migrate schema version 1 to %d: %w", w.path, schemaVersion, err)
			}
		default:
			return fmt.Errorf("open %s: schema version %s, this build reads versions 1 and %d", w.path, v, schemaVersion)
		}
	case tables > 0:
		return fmt.Errorf("open %s: not a bidikit database: it has %d table(s) but no bidikit_meta table", w.path, tables)
	}
	if err := w.create(ctx); err != nil {
		return openErr(w.path, "create schema", err)
	}
	if _, err := w.conn.ExecContext(ctx, "COMMIT"); err != nil {
		return openErr(w.path, "commit schema", err)
	}
	return nil
}

// schemaTables are the tables of this schema version:
//   - chunks: a stream's records, a chunk per stream per commit (see chunk);
//     first and last are the seqs of its first and last record;
//   - keys: the seq of each record with a key, to find resends;
//   - snapshots: each stream's latest snapshot.
var schemaTables = []string{
	`CREATE TABLE IF NOT EXISTS bidikit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS chunks (
		stream TEXT NOT NULL,
		first  INTEGER NOT NULL,
		last   INTEGER NOT NULL,
		data   BLOB NOT NULL,
		PRIMARY KEY (stream, first)
	) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS keys (
		stream TEXT NOT NULL,
		key    TEXT NOT NULL,
		seq    INTEGER NOT NULL,
		PRIMARY KEY (stream, key)
	) WITHOUT ROWID`,
	`CREATE TABLE IF NOT EXISTS snapshots (
		stream TEXT PRIMARY KEY,
		seq    INTEGER NOT NULL,
		data   BLOB
	)`,
}

// create creates the tables that are missing and records the schema
// version (inside schema's transaction).
func (w *sqliteWriter) create(ctx context.Context) error {
	for _, q := range schemaTables {
		if _, err := w.conn.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	_, err := w.conn.ExecContext(ctx, `INSERT INTO bidikit_meta (name, value) VALUES ('schema_version', ?1)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, strconv.Itoa(schemaVersion))
	return err
}

// migrateV1 turns a version 1 store (a records table, one row per record)
// into this version inside schema's transaction: each stream's records
// become chunks (in seq order, chunkMaxRecords at most each), their keys
// rows of keys, and the records table is dropped.
func (w *sqliteWriter) migrateV1(ctx context.Context) error {
	if err := w.create(ctx); err != nil {
		return err
	}
	if _, err := w.conn.ExecContext(ctx, `INSERT INTO keys (stream, key, seq)
		SELECT stream, key, seq FROM records WHERE key != ''`); err != nil {
		return fmt.Errorf("copy keys: %w", err)
	}
	var (
		stream string
		after  int64 = -1
		c      chunk
		put    = func(stream string) error {
			if c.n == 0 {
				return nil
			}
			_, err := w.conn.ExecContext(ctx, `INSERT INTO chunks (stream, first, last, data) VALUES (?1, ?2, ?3, ?4)`,
				stream, int64(c.first), int64(c.last), c.data)
			c = chunk{}
			return err
		}
	)
	for { // pages of records in (stream, seq) order
		rows, err := w.conn.QueryContext(ctx, `SELECT stream, seq, key, unix_nanos, payload FROM records
			WHERE (stream, seq) > (?1, ?2) ORDER BY stream, seq LIMIT 1000`, stream, after)
		if err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		var page []Record
		for rows.Next() {
			var r Record
			var seq int64
			if err := rows.Scan(&r.Stream, &seq, &r.Key, &r.UnixNanos, &r.Payload); err != nil {
				_ = rows.Close()
				return fmt.Errorf("read records: %w", err)
			}
			r.Seq = uint64(seq)
			page = append(page, r)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		for i := range page {
			r := &page[i]
			if r.Stream != stream || c.full() {
				if err := put(stream); err != nil {
					return fmt.Errorf("write chunk of %q: %w", stream, err)
				}
			}
			stream = r.Stream
			c.add(r)
			after = int64(r.Seq)
		}
		if len(page) < 1000 {
			break
		}
	}
	if err := put(stream); err != nil {
		return fmt.Errorf("write chunk of %q: %w", stream, err)
	}
	_, err := w.conn.ExecContext(ctx, `DROP TABLE records`)
	return err
}
