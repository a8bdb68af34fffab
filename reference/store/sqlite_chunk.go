package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// A chunk is one row of the chunks table: consecutive records of one
// stream committed together, encoded one after another in data. The writer
// stores a commit's records of a stream as one chunk (split at
// chunkMaxRecords or chunkMaxBytes), so a commit costs SQLite one B-tree
// insert per stream and chunk instead of one per record: with many streams
// the per-record insert (seek, page balance, WAL frame) was the writer's
// whole cost.
//
// Each record in data is:
//
//	uvarint  seq minus the previous record's seq (the first: minus first, 0)
//	uvarint  len(key), then key
//	varint   unix_nanos
//	uvarint  len(payload), then payload
const (
	chunkMaxRecords = 128
	chunkMaxBytes   = 32 << 10
)

// chunk is one chunk being built by the writer.
type chunk struct {
	first, last uint64
	n           int
	data        []byte
}

// add appends r (whose seq is above c.last, or c is empty) to c.
func (c *chunk) add(r *Record) {
	if c.n == 0 {
		c.first, c.last = r.Seq, r.Seq
	}
	c.data = binary.AppendUvarint(c.data, r.Seq-c.last)
	c.data = binary.AppendUvarint(c.data, uint64(len(r.Key)))
	c.data = append(c.data, r.Key...)
	c.data = binary.AppendVarint(c.data, r.UnixNanos)
	c.data = binary.AppendUvarint(c.data, uint64(len(r.Payload)))
	c.data = append(c.data, r.Payload...)
	c.last = r.Seq
	c.n++
}

// full reports whether c takes no more records.
func (c *chunk) full() bool { return c.n >= chunkMaxRecords || len(c.data) >= chunkMaxBytes }

// decodeChunk calls fn for each record of the chunk of stream starting at
// first, in seq order, stopping at fn's first error. Keys and payloads are
// copies: a caller may keep them. A chunk that does not decode is an error
// naming the stream, the chunk and the byte where it breaks.
func decodeChunk(stream string, first uint64, data []byte, fn func(Record) error) error {
	seq, off := first, 0
	bad := func(what string) error {
		return fmt.Errorf("chunk of %q at seq %d is corrupt: %s at byte %d of %d", stream, first, what, off, len(data))
	}
	uvarint := func(what string) (uint64, error) {
		v, n := binary.Uvarint(data[off:])
		if n <= 0 {
			return 0, bad(what)
		}
		off += n
		return v, nil
	}
	bytesOf := func(what string) ([]byte, error) {
		n, err := uvarint(what + " length")
		if err != nil {
			return nil, err
		}
		if n > uint64(len(data)-off) {
			return nil, bad(what + " longer than the chunk")
		}
		var b []byte
		if n > 0 {
			b = bytes.Clone(data[off : off+int(n)])
		}
		off += int(n)
		return b, nil
	}
	for i := 0; off < len(data); i++ {
		d, err := uvarint("seq delta")
		if err != nil {
			return err
		}
		if (i == 0) != (d == 0) || seq+d < seq {
			return bad("seq not increasing")
		}
		seq += d
		key, err := bytesOf("key")
		if err != nil {
			return err
		}
		nanos, n := binary.Varint(data[off:])
		if n <= 0 {
			return bad("unix_nanos")
		}
		off += n
		payload, err := bytesOf("payload")
		if err != nil {
			return err
		}
		if err := fn(Record{Stream: stream, Seq: seq, Key: string(key), UnixNanos: nanos, Payload: payload}); err != nil {
			return err
		}
	}
	return nil
}
