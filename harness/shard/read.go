package shard

import (
	"bufio"
	"compress/gzip"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/bidikit/bidikit/harness/event"
)

// Reader reads a raw file section by section, streaming: it holds one batch
// of events at a time. Not safe for concurrent use.
type Reader struct {
	name string
	file io.Closer
	gz   *gzip.Reader
	dec  *gob.Decoder

	hdr     *Header
	batch   []event.Event
	pos     int
	trailer *Trailer
	events  int64
}

// Open opens a raw file written by Create.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("raw results: %w", err)
	}
	r, err := NewReader(f, path)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	r.file = f
	return r, nil
}

// NewReader reads a raw file from in; name is used in messages.
func NewReader(in io.Reader, name string) (*Reader, error) {
	gz, err := gzip.NewReader(bufio.NewReaderSize(in, 256<<10))
	if err != nil {
		return nil, fmt.Errorf("%s is not a bidikit raw results file (written by bidikit run --raw-out): %w", name, err)
	}
	return &Reader{name: name, gz: gz, dec: gob.NewDecoder(gz)}, nil
}

// Name is the name the reader was opened with.
func (r *Reader) Name() string { return r.name }

// Close closes the file (when Open opened it).
func (r *Reader) Close() error {
	err := r.gz.Close()
	if r.file != nil {
		err = errors.Join(err, r.file.Close())
	}
	return err
}

// next decodes one frame into a fresh value (gob leaves fields a frame does
// not carry untouched, so frames are never reused). End of input is io.EOF
// only at a frame boundary.
func (r *Reader) next() (*frame, error) {
	f := new(frame)
	if err := r.dec.Decode(f); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("%s: corrupt or truncated raw results: %w", r.name, err)
	}
	return f, nil
}

// Next moves to the next scenario's section and returns its header; any
// events left in the current section are skipped. io.EOF means no more
// sections.
func (r *Reader) Next() (*Header, error) {
	if r.hdr != nil && r.trailer == nil {
		for {
			if _, err := r.Event(); err == io.EOF {
				break
			} else if err != nil {
				return nil, err
			}
		}
	}
	f, err := r.next()
	if err != nil {
		return nil, err
	}
	if f.Header == nil {
		return nil, fmt.Errorf("%s: corrupt raw results: expected a scenario header", r.name)
	}
	if f.Header.Format != Format {
		return nil, fmt.Errorf("%s: raw results format %d, this bidikit reads format %d: merge with the bidikit version that ran the shards", r.name, f.Header.Format, Format)
	}
	r.hdr, r.batch, r.pos, r.trailer, r.events = f.Header, nil, 0, nil, 0
	return r.hdr, nil
}

// Event returns the current section's next event. io.EOF means the section
// is complete: Trailer is then available. The event is valid until the next
// call.
func (r *Reader) Event() (*event.Event, error) {
	if r.hdr == nil {
		return nil, fmt.Errorf("%s: Event before Next", r.name)
	}
	for r.pos >= len(r.batch) {
		if r.trailer != nil {
			return nil, io.EOF
		}
		f, err := r.next()
		if err == io.EOF {
			return nil, fmt.Errorf("%s: truncated raw results: scenario %q of shard %s ends without its trailer (did the shard finish?)", r.name, r.hdr.Name, r.hdr.Label())
		}
		if err != nil {
			return nil, err
		}
		switch {
		case f.Trailer != nil:
			if f.Trailer.Events != r.events {
				return nil, fmt.Errorf("%s: corrupt raw results: scenario %q holds %d events, its trailer says %d", r.name, r.hdr.Name, r.events, f.Trailer.Events)
			}
			r.trailer = f.Trailer
			r.batch, r.pos = nil, 0
		case f.Header != nil:
			return nil, fmt.Errorf("%s: corrupt raw results: scenario %q has no trailer before the next header", r.name, r.hdr.Name)
		default:
			r.batch, r.pos = f.Events, 0
			r.events += int64(len(f.Events))
		}
	}
	e := &r.batch[r.pos]
	r.pos++
	return e, nil
}

// Trailer is the current section's trailer, once Event has returned io.EOF.
func (r *Reader) Trailer() *Trailer { return r.trailer }
