package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
	zlog "github.com/rs/zerolog/log"
)

// Some toxics (bandwidth) log through zerolog's global logger, at trace
// level on every removal; keep only its warnings. Set in init, before any
// toxic can run.
func init() {
	zlog.Logger = zlog.Logger.Level(zerolog.WarnLevel)
}

// StartProxy starts an in-process toxiproxy proxy listening on a free
// loopback port (proxy.Listen holds the bound host:port once it returns) and
// forwarding every accepted connection to upstream. Connection faults add
// toxics to it; clients that should feel them dial proxy.Listen.
//
// stop removes every toxic, then closes the listener and every proxied
// connection; it is idempotent, and it also runs by itself when ctx is done.
// The proxy's per-connection pump goroutines end as soon as their sockets
// are closed, which stop does before it returns (they finish within
// moments; leak checks should use Eventually).
//
// toxiproxy as a library needs an *ApiServer for its logger and metrics
// container even when no HTTP API runs: StartProxy builds one with a no-op
// zerolog logger and metrics disabled, and never calls Listen on it.
func StartProxy(ctx context.Context, upstream string) (*toxiproxy.Proxy, func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("start proxy to %s: %w", upstream, err)
	}
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(api, "bidikit", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, nil, fmt.Errorf("start proxy to %s: %w", upstream, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			p.Toxics.ResetToxics(context.Background())
			p.Stop()
		})
	}
	stopAfter := context.AfterFunc(ctx, stop)
	return p, func() {
		stopAfter() // keep the AfterFunc from starting; once.Do waits if it has
		stop()
	}, nil
}

// Directions a connection fault can act on, as its `stream` parameter.
const (
	streamBoth       = "both"
	streamUpstream   = "upstream"   // client -> server bytes
	streamDownstream = "downstream" // server -> client bytes
)

// directions maps a `stream` parameter to toxiproxy stream names.
func directions(fault, stream string) ([]string, error) {
	switch stream {
	case "", streamBoth:
		return []string{streamUpstream, streamDownstream}, nil
	case streamUpstream, streamDownstream:
		return []string{stream}, nil
	}
	return nil, paramErr(fault, "stream", "must be one of both, upstream, downstream, got %q", stream)
}

// checkDuration validates a connection fault's `duration` (0 = until the
// end of the run).
func checkDuration(fault string, d time.Duration) error {
	if d < 0 {
		return paramErr(fault, "duration", "must be >= 0 (0 = until the end of the run), got %s", d)
	}
	return nil
}

// toxicSeq makes toxic names unique within the process: a fault that fires
// every few seconds may overlap with its own previous firing.
var toxicSeq atomic.Uint64

// toxic is one connection fault's effect: a toxiproxy toxic type and its
// attributes, added on the chosen directions for a duration.
//
// Connection faults act on the whole proxy, so every client connection
// through it feels them, and the schedule's fraction, count and roles do not
// apply (the targets passed to Inject are ignored). Each toxic has
// toxicity 1.0: it affects every connection in its direction. (toxiproxy's
// toxicity is a per-connection-and-direction coin toss, not a client
// fraction, so mapping the schedule's fraction onto it would mislead.)
type toxic struct {
	fault    string // registered fault name, for errors and toxic names
	typ      string // toxiproxy toxic type: latency, bandwidth, ...
	attrs    any    // JSON-encodable attributes of typ
	streams  []string
	duration time.Duration // 0 = until ctx is done
}

// inject adds the toxic to env's proxy on every direction and starts one
// goroutine that removes them when the duration has passed or ctx is done,
// whichever comes first. That goroutine owns the toxic names; it ends once
// it has removed them. If adding fails half-way, the toxics already added
// are removed before inject returns the error.
func (t toxic) inject(ctx context.Context, env Env) error {
	if env == nil || env.Proxy() == nil {
		return fmt.Errorf("fault %q acts on the toxiproxy proxy in front of the server, but this run has none", t.fault)
	}
	p := env.Proxy()
	if err := ctx.Err(); err != nil {
		return err
	}
	seq := toxicSeq.Add(1)
	var names []string
	for _, s := range t.streams {
		name := fmt.Sprintf("bidikit-%s-%d-%s", t.fault, seq, s)
		body, err := json.Marshal(map[string]any{
			"name":       name,
			"type":       t.typ,
			"stream":     s,
			"toxicity":   1.0,
			"attributes": t.attrs,
		})
		if err != nil {
			return fmt.Errorf("fault %q: encode toxic: %w", t.fault, err)
		}
		if _, err := p.Toxics.AddToxicJson(bytes.NewReader(body)); err != nil {
			removeToxics(p, names)
			return fmt.Errorf("fault %q: add %s toxic on %s: %w", t.fault, t.typ, s, err)
		}
		names = append(names, name)
	}
	go func() {
		var expired <-chan time.Time
		if t.duration > 0 {
			timer := time.NewTimer(t.duration)
			defer timer.Stop()
			expired = timer.C
		}
		select {
		case <-ctx.Done():
		case <-expired:
		}
		removeToxics(p, names)
	}()
	return nil
}

// removeToxics removes the named toxics; one already gone (the proxy was
// stopped and reset first) is fine.
func removeToxics(p *toxiproxy.Proxy, names []string) {
	for _, n := range names {
		err := p.Toxics.RemoveToxic(context.Background(), n)
		if err != nil && !errors.Is(err, toxiproxy.ErrToxicNotFound) {
			slog.Warn("fault: remove toxic", "toxic", n, "err", err)
		}
	}
}
