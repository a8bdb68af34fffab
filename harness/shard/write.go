package shard

import (
	"bufio"
	"compress/gzip"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
)

// Writer writes one shard's raw file: one Section per scenario, one after
// the other. It is not safe for concurrent use, except that a Section's Tap
// methods are called by the engine as engine.Tap documents (one goroutine at
// a time, in order). The first write error sticks: later writes are skipped
// and Close returns it.
type Writer struct {
	name string
	file io.Closer // nil when writing to a caller's io.Writer
	bw   *bufio.Writer
	gz   *gzip.Writer
	enc  *gob.Encoder
	err  error
	open *Section
}

// Create creates (or truncates) path and returns a Writer for it.
func Create(path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("raw results: %w", err)
	}
	w := NewWriter(f, path)
	w.file = f
	return w, nil
}

// NewWriter writes a raw file to out; name is used in messages. Close
// flushes but does not close out.
func NewWriter(out io.Writer, name string) *Writer {
	bw := bufio.NewWriterSize(out, 256<<10)
	gz, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed) // a valid level never fails
	return &Writer{name: name, bw: bw, gz: gz, enc: gob.NewEncoder(gz)}
}

func (w *Writer) write(f *frame) {
	if w.err != nil {
		return
	}
	if err := w.enc.Encode(f); err != nil {
		w.err = fmt.Errorf("writing raw results to %s: %w", w.name, err)
	}
}

// Section starts one scenario's section. h.Format is set; h.StartedAt is
// filled in by Begin. The previous section must have been closed.
func (w *Writer) Section(h Header) *Section {
	if w.open != nil && w.err == nil {
		w.err = fmt.Errorf("raw results %s: section %q started before section %q was closed", w.name, h.Name, w.open.h.Name)
	}
	h.Format = Format
	s := &Section{w: w, h: h}
	w.open = s
	return s
}

// Close flushes everything and closes the file (when Create opened it). It
// returns the first error of any write.
func (w *Writer) Close() error {
	if w.open != nil && w.err == nil {
		w.err = fmt.Errorf("raw results %s: section %q was never closed", w.name, w.open.h.Name)
	}
	err := w.err
	err = errors.Join(err, w.gz.Close(), w.bw.Flush())
	if w.file != nil {
		err = errors.Join(err, w.file.Close())
	}
	if err != nil && w.err == nil {
		return fmt.Errorf("writing raw results to %s: %w", w.name, err)
	}
	return err
}

// Section is one scenario of a raw file. It implements engine.Tap: hand it
// to engine.Run with engine.WithTap, then Close it with the run's result.
type Section struct {
	w      *Writer
	h      Header
	begun  bool
	events int64
	final  *engine.Final
}

var _ engine.Tap = (*Section)(nil)

// Begin implements engine.Tap: it writes the header.
func (s *Section) Begin(start time.Time) {
	s.h.StartedAt = start
	s.begun = true
	s.w.write(&frame{Header: &s.h})
}

// Events implements engine.Tap: it streams b to the file.
func (s *Section) Events(b []event.Event) {
	if len(b) == 0 {
		return
	}
	s.events += int64(len(b))
	s.w.write(&frame{Events: b})
}

// End implements engine.Tap.
func (s *Section) End(f engine.Final) { s.final = &f }

// Close ends the section with the run's result (whether or not the run
// got as far as Begin and End).
func (s *Section) Close(res result.Scenario) error {
	if !s.begun {
		s.begun = true
		s.w.write(&frame{Header: &s.h})
	}
	t := &Trailer{Result: res, Events: s.events}
	if s.final != nil {
		t.Histograms = &s.final.Histograms
		t.Health = s.final.Health
	}
	s.w.write(&frame{Trailer: t})
	if s.w.open == s {
		s.w.open = nil
	}
	return s.w.err
}
