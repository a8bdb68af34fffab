// Package procluster runs the README's local cluster as a user does: n
// `bidikit serve` processes, each embedding one member of a JetStream
// cluster (nats-server's own routes and Raft), every stream replicated n
// times, on loopback ports; and it kills one of them with SIGKILL as the
// kill-server fault's fault.Server, reporting what it killed
// (engine.DownReporter). It has no Ginkgo in it.
package procluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/harness/spawn"
)

// Options say how to start a cluster.
type Options struct {
	// Binary is the bidikit executable (built without -race is fine).
	Binary string
	// Dir holds each member's JetStream storage (Dir/js1, Dir/js2, ...).
	Dir string
	// N is the number of members (default 3).
	N int
	// Output, when non-nil, receives every line the members print, each
	// prefixed with the member's name ("n1: ...").
	Output io.Writer
	// StartTimeout bounds the start of all members (default 90s: each waits
	// for a majority of the routes before it serves).
	StartTimeout time.Duration
	// Args are extra `bidikit serve` flags for every member.
	Args []string
}

// Cluster is n running (or killed) members. Members, Addrs and AdminURLs
// are fixed after Start.
type Cluster struct {
	Members []*spawn.Server
	names   []string
}

// Start starts the members concurrently (each waits for a majority of the
// others) and returns once every one serves. Route ports are chosen free
// just before the start; a start that loses one to another process is
// retried (at most three attempts). On error nothing is left running.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.N == 0 {
		o.N = 3
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 90 * time.Second
	}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var c *Cluster
		if c, err = start(ctx, o, attempt); err == nil {
			return c, nil
		}
		if !strings.Contains(err.Error(), "address already in use") || ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func start(ctx context.Context, o Options, attempt int) (*Cluster, error) {
	ports, err := freePorts(o.N)
	if err != nil {
		return nil, err
	}
	routes := make([]string, o.N)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{Members: make([]*spawn.Server, o.N), names: make([]string, o.N)}
	errs := make([]error, o.N)
	var wg sync.WaitGroup
	for i := range o.N {
		name := fmt.Sprintf("n%d", i+1)
		c.names[i] = name
		opts := spawn.Options{
			Binary: o.Binary,
			Args: []string{
				"--nats-embed", filepath.Join(o.Dir, fmt.Sprintf("js%d-%d", i+1, attempt)),
				"--nats-listen", "127.0.0.1:0",
				"--nats-server-name", name,
				"--nats-cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]),
				"--nats-routes", strings.Join(routes, ","),
				"--nats-replicas", fmt.Sprint(o.N),
			},
			StartTimeout: o.StartTimeout,
		}
		opts.Args = append(opts.Args, o.Args...)
		if o.Output != nil {
			opts.Output = &prefixWriter{w: o.Output, prefix: name + ": "}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Members[i], errs[i] = spawn.Start(ctx, opts)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		return nil, fmt.Errorf("start a %d-member cluster: %w", o.N, err)
	}
	return c, nil
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Addrs are the members' gRPC addresses, in member order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.Addr()
	}
	return out
}

// Name is member i's server name (n1, n2, ...).
func (c *Cluster) Name(i int) string { return c.names[i] }

// Stop ends every member that still runs (SIGTERM, then SIGKILL after its
// grace) and returns what went wrong, member by member. Members the
// harness killed are not errors.
func (c *Cluster) Stop() error {
	errs := make([]error, len(c.Members))
	var wg sync.WaitGroup
	for i, m := range c.Members {
		if m == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Stop(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.names[i], err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Killer returns the fault.Server of a run whose kill-server fault kills
// member victim.
func (c *Cluster) Killer(victim int) *Killer {
	return &Killer{c: c, victim: victim, killed: make(chan struct{})}
}

// Killer kills one member with SIGKILL (kill -9: no drain, no flush) when
// the kill-server fault fires, once; it reports that member's gRPC address
// as down (engine.DownReporter) so that health after the run is judged over
// the others. A killed member is not restarted.
type Killer struct {
	c      *Cluster
	victim int
	once   sync.Once
	err    error
	killed chan struct{}
}

var _ fault.Server = (*Killer)(nil)

// Kill kills the victim and waits until its process has exited.
func (k *Killer) Kill() error {
	k.once.Do(func() {
		k.err = k.c.Members[k.victim].Kill()
		close(k.killed)
	})
	return k.err
}

// Restart always fails: the test wants the member to stay down.
func (k *Killer) Restart(context.Context) error {
	return errors.New("procluster: a killed member is not restarted")
}

// Down implements engine.DownReporter.
func (k *Killer) Down() []string {
	select {
	case <-k.killed:
		if k.err == nil {
			return []string{k.c.Members[k.victim].Addr()}
		}
	default:
	}
	return nil
}

// Killed is closed once Kill has run.
func (k *Killer) Killed() <-chan struct{} { return k.killed }

// prefixWriter writes every complete line it is given to w, prefixed
// (spawn hands it the child's output in arbitrary chunks, from one
// goroutine at a time).
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	part   []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := bytes.IndexByte(p.part, '\n')
		if i < 0 {
			break
		}
		if _, err := io.WriteString(p.w, p.prefix+string(p.part[:i+1])); err != nil {
			return 0, err
		}
		p.part = p.part[i+1:]
	}
	return len(b), nil
}
