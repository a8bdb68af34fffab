package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/bench/plainserver"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/validate"
)

func init() { rootCmd.AddCommand(newServeCmd()) }

// newServeCmd builds `bidikit serve`: flags -> reference.Config ->
// reference.Build, then serve until SIGINT/SIGTERM and shut down gracefully.
func newServeCmd() *cobra.Command {
	cfg := reference.DefaultConfig()
	var logLevel, logFormat, comparator string
	cmd := &cobra.Command{
		Use:     "serve",
		Short:   "Run the reference server (chat, collab, game) with admin HTTP",
		Long:    serveLong,
		Example: serveExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newSlogLogger(cmd.ErrOrStderr(), logLevel, logFormat)
			if err != nil {
				return usageError{err}
			}
			if err := cfg.Finish(cmd.Flags()); err != nil {
				return usageError{err}
			}
			if comparator != "" {
				return serveComparator(cmd, comparator, cfg.Options.Addr, cfg.Options.AdminAddr)
			}
			srv, err := reference.Build(cfg, log)
			var cfgErr *reference.ConfigError
			if errors.As(err, &cfgErr) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := srv.Start(ctx); err != nil {
				return validate.FlagError(cmd.Flags(), err) // a listen error names its field's flag
			}
			go func() {
				<-ctx.Done()
				stop() // a second signal gets the default action: exit now
			}()
			admin := srv.AdminAddr()
			if admin == "" {
				admin = "off"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bidikit serve: listening grpc=%s admin=%s storage=%s\n", srv.Addr(), admin, srv.Storage())
			return srv.Wait()
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	cfg.RegisterFlags(fs) // with the HTTP/2 flood guard's (reference/h2limits.go)
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug (every stream start and end), info, warn or error")
	fs.StringVar(&logFormat, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&comparator, "comparator", "", "serve bench conn-ramp's comparator instead of the reference: plain-grpc (bench/plainserver) on --addr and --admin-addr; the other flags are ignored")
	_ = fs.MarkHidden("comparator") // bench conn-ramp --vs plain-grpc spawns it; not a server to deploy
	return cmd
}

// serveComparator serves the comparator named by --comparator until SIGINT
// or SIGTERM.
func serveComparator(cmd *cobra.Command, name, addr, adminAddr string) error {
	if name != bench.VsPlain {
		return usagef("--comparator %q: want %s", name, bench.VsPlain)
	}
	if adminAddr == "" {
		return usagef("--comparator %s needs --admin-addr: conn-ramp reads its RSS from /metrics", name)
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return plainserver.Serve(ctx, addr, adminAddr, cmd.OutOrStdout())
}

// newSlogLogger returns a logger writing to w at level in format (text|json);
// errors name the flag.
func newSlogLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// serveLong is the long help of newServeCmd.
const serveLong = `serve runs the bidikit reference server: the chat, collab and game
services on --addr (gRPC, with health, reflection and channelz) and an admin
HTTP server on --admin-addr with /metrics, /healthz and /debug/pprof/.

Storage: with --db PATH chat messages and collab operations are committed to
a SQLite file before they are acknowledged and survive kill -9; without it
they are kept in memory only and lost on exit.

Clustered mode: with --nats URL (a NATS server with JetStream) or
--nats-embed DIR (start one in this process, storing in DIR, listening on
--nats-listen) several serve instances share everything (exclusive with --db):
  chat    each room is one JetStream stream whose sequence is the room's seq:
          a member on any instance sees the same gapless order, an Ack means
          JetStream stored the message, and a member may resume on another
          instance. Presence, typing and Joined.members are per instance.
  collab  each document is one stream whose sequence is the version: an
          instance appends an op only if the stream still ends at the version
          it transformed against (JetStream decides who was first; the loser
          transforms again), so every instance replays the same text; an
          editor may reopen from its version on another instance.
  game    each match has one owner instance, holder of a JetStream KV lease;
          the others relay their players' joins and inputs to it and its
          ticks to their players. When the owner dies another instance takes
          the lease and the match goes on with increasing ticks.
Several --nats-embed instances form one JetStream cluster with
--nats-cluster-listen and the same --nats-routes list on every member (its own
route address included); with --nats-replicas 3, losing one of three
instances loses nothing.

Auth: every call carries "authorization: Bearer <token>". With --tokens FILE
only the listed tokens are accepted. Without --tokens the server runs in
development auth (--dev-auth): any token is accepted as the user id, and a
warning is logged. Never use development auth on a shared network.

Access: --acl FILE lists who may enter chat rooms (rooms:), collab documents
(documents:) and game matches (matches:); names not listed are open to every
user, a name listed with [] is closed to everyone. A Join, Open or JoinMatch
the file refuses is answered with an Error event PERMISSION_DENIED (code 7,
field join.room, open.document or join.match) and the stream stays open.

On start it prints one line to stdout, for scripts to parse:
  bidikit serve: listening grpc=HOST:PORT admin=HOST:PORT storage=memory
(admin=off when --admin-addr is "", storage=sqlite:PATH with --db,
storage=jetstream:URL with --nats or --nats-embed).
SIGINT or SIGTERM starts a graceful shutdown bounded by --grace; a second
signal kills the process.`

// serveExample is the examples of newServeCmd's help.
const serveExample = `  bidikit serve
  bidikit serve --db chat.db --tokens tokens.txt --acl acl.yaml
  bidikit serve --addr 127.0.0.1:0 --admin-addr "" --log-level debug
  bidikit serve --nats-embed /var/lib/bidikit/js --nats-listen 127.0.0.1:4222 --addr :7001
  bidikit serve --nats nats://127.0.0.1:4222 --addr :7002 --admin-addr 127.0.0.1:9092
  # three instances, each embedding a member of one JetStream cluster (repeat with 2 and 3):
  bidikit serve --addr 127.0.0.1:7071 --admin-addr 127.0.0.1:9071 --nats-embed /tmp/js1 \
    --nats-listen 127.0.0.1:4221 --nats-server-name n1 --nats-cluster-listen 127.0.0.1:6221 \
    --nats-routes nats-route://127.0.0.1:6221,nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223 \
    --nats-replicas 3`
