package fault

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// KillServerParams are the parameters of "kill-server".
type KillServerParams struct {
	// RestartAfter, when > 0, restarts the server (same address and
	// database) that long after the kill; 0 leaves it dead.
	RestartAfter time.Duration `yaml:"restart_after"`
}

// killServer sends SIGKILL to the spawned server (kill -9: no graceful stop,
// only what was durably stored survives) and optionally restarts it later.
type killServer struct{ p KillServerParams }

// Inject kills the server and returns once it has exited. A restart, when
// asked for, runs on its own goroutine after RestartAfter unless ctx is done
// first; a failed restart is logged, since Inject has already returned.
func (f killServer) Inject(ctx context.Context, env Env, _ []Target) error {
	if env == nil || env.Server() == nil {
		return errors.New("kill-server needs --spawn-server (the harness must own the server process to kill it)")
	}
	srv := env.Server()
	if err := srv.Kill(); err != nil {
		return err
	}
	if f.p.RestartAfter <= 0 {
		return nil
	}
	go func() {
		timer := time.NewTimer(f.p.RestartAfter)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if err := srv.Restart(ctx); err != nil && ctx.Err() == nil {
			slog.Error("fault kill-server: restart failed", "err", err)
		}
	}()
	return nil
}

func init() {
	Register(Spec{
		Name:    "kill-server",
		Scope:   ServerProcess,
		Summary: "SIGKILL the spawned server; restart it on the same address after `restart_after` when > 0 (needs --spawn-server)",
		New: func(decode func(any) error) (Fault, error) {
			var p KillServerParams
			if err := decode(&p); err != nil {
				return nil, err
			}
			if p.RestartAfter < 0 {
				return nil, paramErr("kill-server", "restart_after", "must be >= 0 (0 = no restart), got %s", p.RestartAfter)
			}
			return killServer{p}, nil
		},
	})
}
