// Package refcluster starts clustered reference servers for specs and
// benchmarks: an embedded JetStream nats-server and reference instances
// (reference.Build) that keep chat rooms, collab documents and game
// matches in it, all on loopback with free ports, each stopped at the
// test's clean-up. It has no Ginkgo in it: every helper takes a TB
// (*testing.T, *testing.B or Ginkgo's GinkgoT()).
package refcluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/bidikit/bidikit/harness/fault"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/cluster"
)

// TB is what the helpers need of a test, a benchmark or a Ginkgo spec:
// *testing.T, *testing.B and GinkgoT() all satisfy it. Fatalf must not
// return (testing's runtime.Goexit, Ginkgo's panic).
type TB interface {
	Helper()
	Cleanup(func())
	TempDir() string
	Fatalf(format string, args ...any)
}

// GracePeriod is the graceful-shutdown bound of the instances Config
// describes: short, so that a spec's clean-up stays quick.
const GracePeriod = 2 * time.Second

// StartNATS starts one standalone JetStream nats-server on a free loopback
// port, storing in t.TempDir(); t's clean-up shuts it down (after the
// instances started later, which stop first).
func StartNATS(t TB) *cluster.Embedded {
	t.Helper()
	e, err := cluster.StartEmbedded(t.TempDir(), "127.0.0.1:0", nil)
	if err != nil {
		t.Fatalf("start an embedded NATS server: %v", err)
	}
	t.Cleanup(func() { _ = e.Shutdown() })
	return e
}

// Config is the reference configuration of one instance using the NATS
// server at url ("" for the single-instance memory store): gRPC on
// 127.0.0.1:0, no admin server, GracePeriod, and chat sends unlimited.
func Config(url string) reference.Config {
	cfg := reference.DefaultConfig()
	cfg.Options.Addr = "127.0.0.1:0"
	cfg.Options.AdminAddr = ""
	cfg.Options.GracePeriod = GracePeriod
	cfg.NATS = url
	cfg.Chat.SendRate = 0 // unlimited
	return cfg
}

// Instance is one started reference server. Stop, Kill and the clean-up
// may run on any goroutines, in any order, any number of times: the
// server's shutdown runs once.
type Instance struct {
	srv    *reference.Server
	cancel context.CancelFunc
	once   sync.Once
	err    error // Wait's result, set inside once
}

// Start builds cfg and starts the server (log nil: discard). With cfg.NATS
// set it fails t unless the server keeps its state in that NATS server.
// t's clean-up stops it gracefully (a no-op after Kill).
func Start(t TB, cfg reference.Config, log *slog.Logger) *Instance {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := reference.Build(cfg, log)
	if err != nil {
		t.Fatalf("build a reference instance: %v", err)
	}
	if cfg.NATS != "" && srv.Storage() != "jetstream:"+cfg.NATS {
		t.Fatalf("reference instance stores in %q, want jetstream:%s", srv.Storage(), cfg.NATS)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Start(ctx); err != nil {
		cancel()
		t.Fatalf("start a reference instance: %v", err)
	}
	in := &Instance{srv: srv, cancel: cancel}
	t.Cleanup(in.Stop)
	return in
}

// StartN starts n instances of Config(url); see Start.
func StartN(t TB, n int, url string, log *slog.Logger) []*Instance {
	t.Helper()
	ins := make([]*Instance, n)
	for i := range ins {
		ins[i] = Start(t, Config(url), log)
	}
	return ins
}

// Server is the reference server itself.
func (in *Instance) Server() *reference.Server { return in.srv }

// Addr is the instance's gRPC address.
func (in *Instance) Addr() string { return in.srv.Addr() }

// Stop shuts the instance down gracefully (streams get UNAVAILABLE after
// their acknowledged work is flushed) and blocks until it is down.
func (in *Instance) Stop() {
	in.cancel()
	in.wait()
}

// Kill stops the instance hard: every client connection closes at once,
// with no drain and no flush (grpc.Server.Stop); then it blocks while the
// server's own clean-up runs, as Stop does.
func (in *Instance) Kill() {
	in.srv.GRPC().Stop()
	in.wait()
}

// Wait blocks until the instance is down (after Stop, Kill or the clean-up)
// and returns what went wrong in its shutdown, if anything.
func (in *Instance) Wait() error {
	in.wait()
	return in.err
}

func (in *Instance) wait() { in.once.Do(func() { in.err = in.srv.Wait() }) }

// Killer is the fault.Server that the kill-server fault drives: Kill stops
// its victim hard (Instance.Kill); moving the victim's clients elsewhere is
// the engine's failover. A killed instance is not restarted.
type Killer struct {
	victim *Instance
	once   sync.Once
	killed chan struct{}
}

var _ fault.Server = (*Killer)(nil)

// NewKiller returns a Killer of victim.
func NewKiller(victim *Instance) *Killer {
	return &Killer{victim: victim, killed: make(chan struct{})}
}

// Kill kills the victim and closes Killed; a second Kill does nothing.
func (k *Killer) Kill() error {
	k.once.Do(func() {
		k.victim.Kill()
		close(k.killed)
	})
	return nil
}

// Restart always fails: a killed instance stays down.
func (k *Killer) Restart(context.Context) error {
	return errors.New("refcluster: a killed instance is not restarted")
}

// Killed is closed once Kill has killed the victim.
func (k *Killer) Killed() <-chan struct{} { return k.killed }

// Down implements engine.DownReporter: the victim's address once it is
// killed, so health after the run is judged over the other instances.
func (k *Killer) Down() []string {
	select {
	case <-k.killed:
		return []string{k.victim.Addr()}
	default:
		return nil
	}
}
