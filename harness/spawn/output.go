package spawn

import (
	"bytes"
	"io"
	"sync"
)

// maxLine caps one kept output line; longer lines are cut.
const maxLine = 1024

// ring keeps the last n lines of the server's output. It is safe for
// concurrent use: the process's output copier adds, anyone reads.
type ring struct {
	mu   sync.Mutex
	buf  []string
	next int
	full bool
}

func newRing(n int) *ring { return &ring{buf: make([]string, n)} }

func (r *ring) add(line string) {
	if len(line) > maxLine {
		line = line[:maxLine] + "..."
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = line
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// lines returns the kept lines, oldest first.
func (r *ring) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.buf[:r.next]...)
	}
	return append(append([]string(nil), r.buf[r.next:]...), r.buf[:r.next]...)
}

// lineWriter splits the child's output into lines for the ring, an
// optional tee and a line callback. exec.Cmd calls Write from one goroutine
// at a time (stdout and stderr share it); flush runs after Wait returns.
type lineWriter struct {
	ring   *ring
	tee    io.Writer
	onLine func(string)
	mu     sync.Mutex
	part   []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tee != nil {
		_, _ = w.tee.Write(b)
	}
	w.part = append(w.part, b...)
	for {
		i := bytes.IndexByte(w.part, '\n')
		if i < 0 {
			break
		}
		w.emit(string(bytes.TrimRight(w.part[:i], "\r")))
		w.part = w.part[i+1:]
	}
	if len(w.part) > 64*maxLine { // a runaway line: keep its start only
		w.emit(string(w.part[:maxLine]))
		w.part = w.part[:0]
	}
	return len(b), nil
}

// flush emits a last unterminated line.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.part) > 0 {
		w.emit(string(w.part))
		w.part = nil
	}
}

func (w *lineWriter) emit(line string) {
	w.ring.add(line)
	if w.onLine != nil {
		w.onLine(line)
	}
}
