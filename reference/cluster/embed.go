package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bidikit/bidikit/reference/validate"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EmbedConfig describes a JetStream-enabled nats-server started inside this
// process (`bidikit serve --nats-embed DIR`). Only Dir is required; an empty
// field means its documented default.
//
// Without ClusterListen the server stands alone (one instance's NATS: a
// single point of failure). With ClusterListen and Routes, several embedded
// servers (one per bidikit instance) connect through routes and form one
// JetStream cluster, using nats-server's own clustering: a meta group of
// every server elects a leader, and room streams with Replicas 3 keep
// working, losing nothing acknowledged, while one of three servers is down.
//
// Three instances on one host, each given the same route list:
//
//	EmbedConfig{Dir: "/var/lib/bidikit/js1", Listen: "127.0.0.1:4222",
//		ClusterListen: "127.0.0.1:6222",
//		Routes: []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}}
type EmbedConfig struct {
	// Dir is the JetStream storage directory (--nats-embed). Required.
	Dir string
	// Listen is the client address, host:port; port 0 picks a free one
	// (--nats-listen). Default "127.0.0.1:0".
	Listen string
	// ServerName names the server (--nats-server-name). In a cluster it
	// must be unique and should stay the same across restarts: JetStream's
	// Raft groups know their peers by it. Default: "bidikit-embedded" for a
	// standalone server; "bidikit-<hostname>-<cluster port>" in a cluster,
	// with a random suffix instead of the port when ClusterListen's port
	// is 0 (such a name changes at every start: tests only).
	ServerName string
	// ClusterName is the name every server of the cluster shares. Default
	// "bidikit".
	ClusterName string
	// ClusterListen is the host:port other servers' routes connect to
	// (--nats-cluster-listen); port 0 picks a free one. Default "": no
	// cluster, a standalone server.
	ClusterListen string
	// Routes are the seed routes, "nats-route://host:port" (nats://host:port
	// is accepted too) (--nats-routes). Required with ClusterListen, refused
	// without it. Give every server the same list, its own address included
	// (a route to itself is ignored): the list's length is the initial size
	// of the JetStream meta group, and a leader is elected once a majority
	// of it is up (2 of 3). Servers learn the rest of the cluster through
	// the routes they reach (gossip).
	Routes []string
}

// Default values of EmbedConfig.
const (
	DefaultEmbedListen      = "127.0.0.1:0"
	DefaultEmbedClusterName = "bidikit"
	standaloneServerName    = "bidikit-embedded"
)

// Clustered reports whether c describes a member of a JetStream cluster.
func (c EmbedConfig) Clustered() bool { return c.ClusterListen != "" }

// withDefaults fills the empty fields with their defaults.
func (c EmbedConfig) withDefaults() EmbedConfig {
	if c.Listen == "" {
		c.Listen = DefaultEmbedListen
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultEmbedClusterName
	}
	if c.ServerName == "" {
		c.ServerName = c.defaultServerName()
	}
	return c
}

func (c EmbedConfig) defaultServerName() string {
	if !c.Clustered() {
		return standaloneServerName
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	suffix := "0"
	if _, port, err := net.SplitHostPort(c.ClusterListen); err == nil {
		suffix = port
	}
	if suffix == "0" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		suffix = hex.EncodeToString(b[:])
	}
	return "bidikit-" + strings.ReplaceAll(host, " ", "-") + "-" + suffix
}

// Check reports a configuration that cannot work as a
// *validate.SettingError naming the field. It
// checks c with its defaults applied.
func (c EmbedConfig) Check() error {
	_, _, _, err := c.withDefaults().parse()
	return err
}

// parse checks c (defaults applied) and returns the client and cluster
// addresses and the routes.
func (c EmbedConfig) parse() (client, cluster hostPort, routes []*url.URL, err error) {
	if c.Dir == "" {
		return client, cluster, nil, validate.Settingf("EmbedConfig.Dir", "is empty: want the JetStream storage directory")
	}
	if client, err = splitHostPort(c.Listen); err != nil {
		return client, cluster, nil, &validate.SettingError{Field: "EmbedConfig.Listen", Reason: fmt.Sprintf("%q (e.g. 127.0.0.1:4222)", c.Listen), Err: err}
	}
	if strings.ContainsFunc(c.ServerName, isSpace) || c.ServerName == "" {
		return client, cluster, nil, validate.Settingf("EmbedConfig.ServerName", "is %q: want a name without spaces, unique in the cluster", c.ServerName)
	}
	if strings.ContainsFunc(c.ClusterName, isSpace) {
		return client, cluster, nil, validate.Settingf("EmbedConfig.ClusterName", "is %q: must not contain spaces", c.ClusterName)
	}
	switch {
	case c.ClusterListen == "" && len(c.Routes) > 0:
		return client, cluster, nil, &validate.SettingError{Field: "EmbedConfig.Routes", Also: []string{"EmbedConfig.ClusterListen"},
			Reason: "needs {} (the address this server's routes listen on)"}
	case c.ClusterListen == "":
		return client, cluster, nil, nil
	case len(c.Routes) == 0:
		return client, cluster, nil, &validate.SettingError{Field: "EmbedConfig.ClusterListen", Also: []string{"EmbedConfig.Routes"},
			Reason: "needs {}: a JetStream cluster needs seed routes (give every server the same list, its own address included)"}
	}
	if cluster, err = splitHostPort(c.ClusterListen); err != nil {
		return client, cluster, nil, &validate.SettingError{Field: "EmbedConfig.ClusterListen", Reason: fmt.Sprintf("%q (e.g. 127.0.0.1:6222)", c.ClusterListen), Err: err}
	}
	if client.port != 0 && client.port == cluster.port && client.host == cluster.host {
		return client, cluster, nil, &validate.SettingError{Field: "EmbedConfig.ClusterListen", Also: []string{"EmbedConfig.Listen"},
			Reason: fmt.Sprintf("%q: same address as {}", c.ClusterListen)}
	}
	for _, r := range c.Routes {
		u, err := parseRoute(r)
		if err != nil {
			return client, cluster, nil, &validate.SettingError{Field: "EmbedConfig.Routes", Reason: fmt.Sprintf("route %q", r), Err: err}
		}
		routes = append(routes, u)
	}
	return client, cluster, routes, nil
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

type hostPort struct {
	host string
	port int
}

func splitHostPort(addr string) (hostPort, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return hostPort{}, errors.New("want host:port")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return hostPort{}, fmt.Errorf("bad port %q", portStr)
	}
	return hostPort{host, port}, nil
}

// parseRoute checks one seed route: nats-route://host:port (or nats://),
// nothing else.
func parseRoute(r string) (*url.URL, error) {
	const want = "want nats-route://host:port"
	u, err := url.Parse(strings.TrimSpace(r))
	if err != nil {
		return nil, errors.New(want)
	}
	if u.Scheme != "nats-route" && u.Scheme != "nats" {
		return nil, errors.New(want)
	}
	if u.Opaque != "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New(want)
	}
	hp, err := splitHostPort(u.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errors.New(want), err)
	}
	if hp.host == "" || hp.port == 0 {
		return nil, errors.New(want + " with a host and a non-zero port")
	}
	return u, nil
}

// Embedded is a nats-server with JetStream running inside this process
// (`bidikit serve --nats-embed DIR`): other instances connect to its
// ClientURL, other embedded servers route to its cluster address.
type Embedded struct {
	srv *server.Server
	cfg EmbedConfig // defaults applied
}

// StartEmbedded starts a standalone JetStream-enabled nats-server storing in
// dir and listening for clients on listen: EmbedConfig{Dir: dir, Listen:
// listen}.Start(log).
func StartEmbedded(dir, listen string, log *slog.Logger) (*Embedded, error) {
	return EmbedConfig{Dir: dir, Listen: listen}.Start(log)
}

// Start checks c (errors name the flag), starts the server and returns once
// it accepts client connections. In a cluster JetStream is not usable yet
// then: call WaitJetStreamReady. log may be nil (discard).
func (c EmbedConfig) Start(log *slog.Logger) (*Embedded, error) {
	c = c.withDefaults()
	client, cl, routes, err := c.parse()
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: c.ServerName,
		Host:       client.host,
		Port:       natsPort(client.port),
		JetStream:  true,
		StoreDir:   c.Dir,
		NoSigs:     true,
		NoLog:      log == nil,
	}
	if c.Clustered() {
		opts.Cluster = server.ClusterOpts{Name: c.ClusterName, Host: cl.host, Port: natsPort(cl.port)}
		opts.Routes = routes
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, &validate.SettingError{Field: "EmbedConfig.Dir", Reason: fmt.Sprintf("%s: starting the embedded nats-server", c.Dir), Err: err}
	}
	if log != nil {
		srv.SetLoggerV2(slogAdapter{log.With("component", "nats-server", "server_name", c.ServerName)}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("embedded nats-server on %s (store %s, cluster %q) not ready within 10s (is the address in use?)", c.Listen, c.Dir, c.ClusterListen)
	}
	return &Embedded{srv: srv, cfg: c}, nil
}

// natsPort maps port 0 ("pick a free one") to nats-server's spelling of it:
// nats-server reads 0 as its default port.
func natsPort(p int) int {
	if p == 0 {
		return server.RANDOM_PORT
	}
	return p
}

// ClientURL is where clients (this and other bidikit instances) connect.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Name is the server's name (EmbedConfig.ServerName after defaults).
func (e *Embedded) Name() string { return e.cfg.ServerName }

// Clustered reports whether the server was started as a cluster member.
func (e *Embedded) Clustered() bool { return e.cfg.Clustered() }

// RouteURL is where other servers' routes connect (nats-route://host:port,
// with the port actually bound), or "" for a standalone server.
func (e *Embedded) RouteURL() string {
	addr := e.srv.ClusterAddr()
	if addr == nil {
		return ""
	}
	return "nats-route://" + addr.String()
}

// Routes is how many route connections to other servers are up.
func (e *Embedded) Routes() int { return e.srv.NumRoutes() }

// readyPoll is how often WaitJetStreamReady asks again.
const readyPoll = 100 * time.Millisecond

// WaitJetStreamReady blocks until this server's JetStream answers API
// requests (an account info request over an in-process connection
// succeeds) or ctx ends. A standalone server is ready at once; a cluster
// member once its meta group has elected a leader, which needs a majority
// of the servers named by the routes to be up and connected. The error
// after ctx ended says how many routes were connected and the last answer.
func (e *Embedded) WaitJetStreamReady(ctx context.Context) error {
	nc, err := nats.Connect("", nats.InProcessServer(e.srv), nats.Name("bidikit readiness probe"), nats.NoReconnect())
	if err != nil {
		return fmt.Errorf("embedded NATS server %s: readiness probe: %w", e.cfg.ServerName, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("embedded NATS server %s: readiness probe: %w", e.cfg.ServerName, err)
	}
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("embedded NATS server %s: JetStream not ready (%d routes up; a cluster needs a majority of the servers of its Routes running): %w",
				e.cfg.ServerName, e.srv.NumRoutes(), err)
		case <-tick.C:
		}
	}
}

// Server returns the underlying nats-server.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped.
func (e *Embedded) Shutdown() error {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	return nil
}

// Connect dials a NATS server for a bidikit instance: it reconnects forever
// (an ordered consumer then resumes where it was) and logs connection
// changes. The caller closes the connection.
func Connect(url, name string, log *slog.Logger) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// slogAdapter routes nats-server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
