// Package fault injects failures into a run. Each fault is a small value in
// its own file that registers itself by name in init. A fault only says what
// happens; when it fires, and to which clients (fraction, probability), is
// decided by the scenario's schedule, outside the fault.
package fault

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
)

// Client is what a stream-level fault can do to one virtual client. The
// engine's virtual clients implement it; every method returns at once and is
// safe to call from the fault scheduler's goroutine.
type Client interface {
	// Index is the client's position in the plan; Role its role name.
	Index() int
	Role() string
	// CancelStream cancels the stream's context mid-stream (RST_STREAM with
	// CANCEL); the client reconnects if its behaviour says so.
	CancelStream()
	// HalfClose calls CloseSend and keeps reading until the server ends the
	// stream.
	HalfClose()
	// AbruptClose closes the client's TCP connection without any goodbye
	// (no GOAWAY, no RST_STREAM).
	AbruptClose()
	// StopReading stops receiving for the rest of the run (the stream stays
	// open and unread, so the server's send queue fills).
	StopReading()
	// Pause stops both sending and receiving for d.
	Pause(d time.Duration)
	// Burst sends n messages back to back, ignoring pacing.
	Burst(n int)
	// SendMalformed writes bytes that are not a valid protobuf message as one
	// gRPC message on the stream.
	SendMalformed()
	// SendOversized sends one message whose payload is bytes long.
	SendOversized(bytes int)
	// ResumeStale reconnects and rejoins from a position older than its last
	// seen one (stale by `back` positions; 0 = from the very beginning).
	ResumeStale(back uint64)
}

// Server is what a server-level fault can do; available only when the harness
// started the server as a subprocess (--spawn-server).
type Server interface {
	// Kill sends SIGKILL and waits for the process to exit.
	Kill() error
	// Restart starts the server again on the same address and database and
	// waits until it serves.
	Restart(ctx context.Context) error
}

// Env is the run's shared machinery a fault may use.
type Env interface {
	// Proxy is the in-process toxiproxy proxy that every client connection
	// goes through, or nil when the run has no connection-level faults.
	Proxy() *toxiproxy.Proxy
	// Server controls the spawned server, or nil when the harness does not
	// own the server process.
	Server() Server
}

// Fault is one failure. Inject applies it to targets (the clients the
// schedule chose; empty for run-wide faults) and returns once it is in
// effect. A fault with a duration undoes itself when ctx is done or its
// duration has passed, without blocking Inject.
type Fault interface {
	Inject(ctx context.Context, env Env, targets []Client) error
}

// Scope says what a fault acts on, so the scheduler knows whether it needs
// clients, the proxy or the server.
type Scope int

const (
	// Stream faults act on chosen clients' streams.
	Stream Scope = iota
	// Connection faults act on the toxiproxy proxy in front of the server.
	Connection
	// ServerProcess faults act on the spawned server process.
	ServerProcess
)

// Factory builds a fault from its scenario parameters. decode strictly
// decodes them into a struct pointer; its errors name file, line and field.
type Factory func(decode func(into any) error) (Fault, error)

// Spec is a registered fault kind.
type Spec struct {
	Name    string
	Scope   Scope
	Summary string
	New     Factory
}

var (
	mu       sync.RWMutex
	registry = map[string]Spec{}
)

// Register makes a fault available by name. It panics on a duplicate name.
func Register(s Spec) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[s.Name]; dup {
		panic("fault: duplicate fault " + s.Name)
	}
	registry[s.Name] = s
}

// Lookup returns the fault kind registered under name.
func Lookup(name string) (Spec, bool) {
	mu.RLock()
	defer mu.RUnlock()
	s, ok := registry[name]
	return s, ok
}

// Names lists the registered faults, sorted.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New builds the fault registered under name.
func New(name string, decode func(any) error) (Fault, Spec, error) {
	s, ok := Lookup(name)
	if !ok {
		return nil, Spec{}, fmt.Errorf("unknown fault %q (known: %v)", name, Names())
	}
	f, err := s.New(decode)
	return f, s, err
}
