// Package spawn runs the reference server as a subprocess (`bidikit serve`)
// so the harness can kill -9 it and start it again on the same address: the
// controller behind --spawn-server and the "kill-server" fault.
package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bidikit/bidikit/harness/fault"
)

// Options say which binary to run and how.
type Options struct {
	// Binary is the bidikit executable. Default: os.Executable(), i.e. the
	// running bidikit itself. Tests run inside a test binary, so they must
	// build bidikit first (go build -o <dir>/bidikit ./cmd/bidikit) and set
	// Binary.
	Binary string
	// DB is the SQLite file given to --db; empty runs the server in memory,
	// so nothing survives a kill.
	DB string
	// Addr and AdminAddr are the gRPC and admin listen addresses for the
	// first start (default 127.0.0.1:0 each: free ports). Restarts reuse the
	// ports actually bound.
	Addr, AdminAddr string
	// Args are extra flags appended after the serve flags.
	Args []string
	// Env, when non-nil, is the child's whole environment (default: the
	// harness's own).
	Env []string
	// Output, when non-nil, receives a copy of every line the server prints
	// on stdout and stderr.
	Output io.Writer
	// StartTimeout bounds each start and restart until the server reports
	// it is listening (default 30s).
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after SIGTERM before SIGKILL
	// (default 10s).
	StopGrace time.Duration
}

// readyPrefix starts the line `bidikit serve` prints once it is listening:
//
//	bidikit serve: listening grpc=HOST:PORT admin=HOST:PORT storage=...
const readyPrefix = "bidikit serve: listening "

// outputLines is how many of the server's last output lines are kept for
// error messages.
const outputLines = 40

// Server is a running (or killed) `bidikit serve` child process. It
// implements fault.Server. Addr and AdminAddr never change after Start:
// restarts bind the same ports.
//
// Kill, Restart and Stop are serialised by op and may be called from any
// goroutine; each process's Wait runs on its own goroutine, which owns the
// process's exit status until it closes done.
type Server struct {
	opts      Options
	addr      string
	adminAddr string
	out       *ring

	op   sync.Mutex // serialises Kill, Restart, Stop; guards proc
	proc *process   // current or last process; nil after a failed restart
}

var _ fault.Server = (*Server)(nil)

// process is one run of the binary.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when Wait has returned
	err  error         // Wait's result; read only after done is closed
	// signalled is set (under Server.op) when the harness sent SIGKILL or
	// SIGTERM, so the exit is expected.
	signalled bool
	// killed is set (under Server.op) once Kill has ended this process.
	killed bool
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start runs `<binary> serve --addr A --admin-addr B [--db DB] <args>` and
// returns once the server has printed its listening line and accepts TCP
// connections on its gRPC address. ctx bounds only the start-up: the server
// runs until Kill or Stop. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("spawn: find own executable (set Options.Binary): %w", err)
		}
		opts.Binary = exe
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.AdminAddr == "" {
		opts.AdminAddr = "127.0.0.1:0"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	s := &Server{opts: opts, out: newRing(outputLines)}
	p, addrs, err := s.launch(ctx, opts.Addr, opts.AdminAddr)
	if err != nil {
		return nil, err
	}
	s.proc, s.addr, s.adminAddr = p, addrs.grpc, addrs.admin
	return s, nil
}

// Addr is the gRPC address (host:port) the server listens on.
func (s *Server) Addr() string { return s.addr }

// AdminAddr is the admin HTTP address (host:port): /metrics, /healthz.
func (s *Server) AdminAddr() string { return s.adminAddr }

// Pid is the current process's id, or 0 when none was started.
func (s *Server) Pid() int {
	s.op.Lock()
	defer s.op.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Running reports whether the current process has not exited.
func (s *Server) Running() bool {
	s.op.Lock()
	defer s.op.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Output returns the server's last output lines (stdout and stderr merged).
func (s *Server) Output() []string { return s.out.lines() }

// Kill sends SIGKILL and blocks until the process has exited. It is an
// error to kill a server that is not running (and the error says why it
// stopped, if it died by itself).
func (s *Server) Kill() error {
	s.op.Lock()
	defer s.op.Unlock()
	p := s.proc
	if p == nil || p.exited() {
		return fmt.Errorf("kill server: not running%s", s.exitDetail(p))
	}
	p.signalled = true
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill server (pid %d): %w", p.cmd.Process.Pid, err)
	}
	<-p.done
	p.killed = true
	return nil
}

// Down implements engine.DownReporter: the gRPC address while the current
// process is one that Kill ended (a kill-server fault without a restart, or
// before it). A process that died by itself is not reported, so health after
// the run still fails on it.
func (s *Server) Down() []string {
	s.op.Lock()
	defer s.op.Unlock()
	if s.proc != nil && s.proc.killed {
		return []string{s.addr}
	}
	return nil
}

// Restart starts the server again on the same gRPC and admin addresses and
// database and blocks until it serves (bounded by ctx and
// Options.StartTimeout). The server must not be running: Kill it first. A
// port still held by the dying process is retried for a few seconds.
func (s *Server) Restart(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("restart server: still running (pid %d); Kill it first", s.proc.cmd.Process.Pid)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, _, err := s.launch(ctx, s.addr, s.adminAddr)
		if err == nil {
			s.proc = p
			return nil
		}
		if !strings.Contains(err.Error(), "address already in use") || time.Now().After(deadline) {
			return fmt.Errorf("restart server on %s: %w", s.addr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("restart server on %s: %w (last attempt: %v)", s.addr, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends the server: SIGTERM, then SIGKILL if it has not exited within
// Options.StopGrace; it blocks until the process is gone. It is idempotent.
// It returns an error when SIGKILL was needed, when the server exited with a
// failure after SIGTERM, or when it had died by itself before Stop.
func (s *Server) Stop() error {
	s.op.Lock()
	defer s.op.Unlock()
	p := s.proc
	if p == nil {
		return nil
	}
	if p.exited() {
		if p.signalled || p.err == nil {
			return nil
		}
		err := fmt.Errorf("server had exited before Stop%s", s.exitDetail(p))
		p.signalled = true // report an unexpected death once
		return err
	}
	p.signalled = true
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		_ = p.cmd.Process.Kill()
	}
	grace := time.NewTimer(s.opts.StopGrace)
	defer grace.Stop()
	select {
	case <-p.done:
		if p.err != nil && !diedOf(p.cmd, syscall.SIGTERM) {
			return fmt.Errorf("server exited with %v after SIGTERM: %s", p.err, s.lastLines())
		}
		return nil
	case <-grace.C:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("server did not stop within %s of SIGTERM and was killed: %s", s.opts.StopGrace, s.lastLines())
}

// diedOf reports whether cmd's process was ended by sig (a server that had
// not installed its handler yet dies of SIGTERM's default action: fine).
func diedOf(cmd *exec.Cmd, sig syscall.Signal) bool {
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// listening is what the ready line says.
type listening struct{ grpc, admin string }

// launch starts one process on the given addresses and waits until it is
// ready, has exited, or ctx / the start timeout ends (then it kills it).
// The caller holds op (or is Start, before the Server is shared).
func (s *Server) launch(ctx context.Context, addr, adminAddr string) (*process, listening, error) {
	args := []string{"serve", "--addr", addr, "--admin-addr", adminAddr}
	if s.opts.DB != "" {
		args = append(args, "--db", s.opts.DB)
	}
	args = append(args, s.opts.Args...)

	ready := make(chan listening, 1)
	w := &lineWriter{ring: s.out, tee: s.opts.Output, onLine: func(line string) {
		if l, ok := parseReady(line); ok {
			select {
			case ready <- l:
			default: // only the first ready line counts
			}
		}
	}}
	cmd := exec.Command(s.opts.Binary, args...)
	cmd.Env = s.opts.Env
	cmd.Stdout = w // same writer for both: exec calls Write from one goroutine at a time
	cmd.Stderr = w
	cmd.WaitDelay = 2 * time.Second // bound the output copy if a grandchild holds the pipe
	s.out.add(fmt.Sprintf("--- spawn: %s %s", s.opts.Binary, strings.Join(args, " ")))
	if err := cmd.Start(); err != nil {
		return nil, listening{}, fmt.Errorf("start %s serve: %w", s.opts.Binary, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		w.flush()
		close(p.done)
	}()

	fail := func(format string, args ...any) (*process, listening, error) {
		p.signalled = true
		_ = cmd.Process.Kill()
		<-p.done
		return nil, listening{}, fmt.Errorf(format+": %s", append(args, s.lastLines())...)
	}
	timeout := time.NewTimer(s.opts.StartTimeout)
	defer timeout.Stop()
	var l listening
	select {
	case l = <-ready:
	case <-p.done:
		return nil, listening{}, fmt.Errorf("server exited before it was listening (%v): %s", p.err, s.lastLines())
	case <-ctx.Done():
		return fail("server start interrupted: %v", ctx.Err())
	case <-timeout.C:
		return fail("server printed no %q line within %s", strings.TrimSpace(readyPrefix), s.opts.StartTimeout)
	}
	// The line is printed once the listeners are bound; make sure.
	for {
		c, err := net.DialTimeout("tcp", l.grpc, time.Second)
		if err == nil {
			_ = c.Close()
			return p, l, nil
		}
		select {
		case <-p.done:
			return nil, listening{}, fmt.Errorf("server exited right after it said it was listening (%v): %s", p.err, s.lastLines())
		case <-ctx.Done():
			return fail("server start interrupted: %v", ctx.Err())
		case <-timeout.C:
			return fail("server said it listens on %s but refuses connections: %v", l.grpc, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// parseReady parses the ready line:
// `bidikit serve: listening grpc=HOST:PORT admin=HOST:PORT storage=...`.
func parseReady(line string) (listening, bool) {
	i := strings.Index(line, readyPrefix)
	if i < 0 {
		return listening{}, false
	}
	var l listening
	for _, f := range strings.Fields(line[i+len(readyPrefix):]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "grpc":
			l.grpc = v
		case "admin":
			if v != "off" { // serve prints admin=off when --admin-addr is ""
				l.admin = v
			}
		}
	}
	if _, _, err := net.SplitHostPort(l.grpc); err != nil {
		return listening{}, false
	}
	return l, true
}

// exitDetail describes how p ended, for "not running" errors.
func (s *Server) exitDetail(p *process) string {
	if p == nil || !p.exited() {
		return ""
	}
	if p.signalled {
		return " (killed by the harness)"
	}
	return fmt.Sprintf(" (server exited: %v: %s)", p.err, s.lastLines())
}

// lastLines is the server's last output lines on one line each, for errors.
func (s *Server) lastLines() string {
	lines := s.out.lines()
	if len(lines) == 0 {
		return "(no output)"
	}
	return "last output:\n\t" + strings.Join(lines, "\n\t")
}
