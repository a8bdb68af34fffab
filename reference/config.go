package reference

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc/keepalive"

	"github.com/bidikit/bidikit/reference/acl"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/chat"
	"github.com/bidikit/bidikit/reference/cluster"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/game"
	"github.com/bidikit/bidikit/reference/gamehub"
	"github.com/bidikit/bidikit/reference/service"
	"github.com/bidikit/bidikit/reference/store"
	"github.com/bidikit/bidikit/reference/validate"
)

// Config is everything needed to build the standard reference server (chat,
// collab and game on one storage) — what `bidikit serve` takes from its
// flags and what `bidikit run` uses in-process. Start from DefaultConfig.
type Config struct {
	// Options are the server options. Authenticator, Registry, Metrics and
	// Logger are filled in by Build. Unlike in Options, an empty AdminAddr
	// here disables the admin server.
	Options Options
	// DB is the SQLite file holding the services' logs; "" keeps them in
	// memory (bounded by Chat.History, lost on exit).
	DB string
	// TokensFile is a "TOKEN USER" file (auth.LoadTokens). Exclusive with
	// DevAuth.
	TokensFile string
	// DevAuth accepts any bearer token as the user id (auth.DevMode): for
	// local development only. DefaultConfig sets it; Finish clears it when
	// --tokens is given without --dev-auth.
	DevAuth bool
	// ACLFile is an access list (package acl) guarding chat rooms, collab
	// documents and game matches; "" leaves everything open. When set, Build
	// replaces Collab.Access and Game.Access with the file's lists.
	ACLFile string
	// NATS is the URL of a NATS server with JetStream: chat rooms and collab
	// documents then live in JetStream streams and game matches are owned
	// through a JetStream KV lease, shared by every instance connected to it
	// (clustered mode). Exclusive with NATSEmbed and with DB.
	NATS string
	// NATSEmbed starts a JetStream-enabled nats-server in this process,
	// storing in this directory, and uses it as NATS does; other instances
	// connect to it with --nats. Exclusive with NATS.
	NATSEmbed string
	// NATSListen is the embedded server's client address (port 0: a free
	// one, printed at start).
	NATSListen string
	// NATSServerName names the embedded server; unique in its cluster and
	// stable across restarts ("": cluster.EmbedConfig's default).
	NATSServerName string
	// NATSClusterListen is the embedded server's route address (host:port):
	// set, it joins the JetStream cluster of NATSRoutes; "" (default): no
	// cluster, a standalone server.
	NATSClusterListen string
	// NATSRoutes are the embedded server's seed routes
	// (nats-route://host:port), the same list on every member, its own
	// address included. Required with NATSClusterListen.
	NATSRoutes []string
	// NATSStorage is "file" (default) or "memory" for the room streams.
	NATSStorage string
	// NATSReplicas is the room streams' replication factor (1 for one NATS
	// server, 3 for a JetStream cluster).
	NATSReplicas int
	// Chat configures the chat service.
	Chat chat.Config
	// Collab configures the collaborative-editing service.
	Collab collab.Config
	// Game configures the game-sync service.
	Game game.Config

	// flags is the flag set RegisterFlags bound c to, if any: Build's errors
	// then name flags (validate.FlagError) where they name fields.
	flags *pflag.FlagSet
}

// DefaultConfig returns the documented defaults: loopback addresses, memory
// storage, development auth.
func DefaultConfig() Config {
	return Config{
		Options: Options{
			Addr:                 DefaultAddr,
			AdminAddr:            DefaultAdminAddr,
			MaxConcurrentStreams: DefaultMaxConcurrentStreams,
			MaxConnections:       DefaultMaxConnections,
			MaxRecvMsgSize:       DefaultMaxRecvMsgSize,
			MaxHeaderListSize:    DefaultMaxHeaderListSize,
			ReadBufferSize:       DefaultReadBufferSize,
			Keepalive:            keepalive.ServerParameters{Time: DefaultKeepaliveTime, Timeout: DefaultKeepaliveTimeout},
			KeepalivePolicy:      keepalive.EnforcementPolicy{MinTime: DefaultKeepaliveMinTime, PermitWithoutStream: true},
			GracePeriod:          DefaultGracePeriod,
		},
		DevAuth:      true,
		NATSListen:   "127.0.0.1:0",
		NATSStorage:  "file",
		NATSReplicas: 1,
		Chat:         chat.DefaultConfig(),
		Collab:       collab.DefaultConfig(),
		Game:         game.DefaultConfig(),
	}
}

// RegisterFlags binds c to flags on fs (current values as defaults): the
// server's addresses, storage, auth, ACL, every limit of Options and the
// services' own flags.
func (c *Config) RegisterFlags(fs *pflag.FlagSet) {
	o := &c.Options
	fs.StringVar(&o.Addr, "addr", o.Addr, "gRPC listen address (host:port; port 0 picks a free one)")
	fs.StringVar(&o.AdminAddr, "admin-addr", o.AdminAddr, "admin HTTP address for /metrics, /healthz and /debug/pprof/ (\"\" disables it; keep it on loopback: pprof is exposed)")
	fs.StringVar(&c.DB, "db", c.DB, "SQLite file for durable storage, created if missing (default none: messages are kept in memory only and lost on exit)")
	fs.StringVar(&c.TokensFile, "tokens", c.TokensFile, "file of \"TOKEN USER\" lines; only these bearer tokens are accepted, and --dev-auth is off (default none: --dev-auth)")
	fs.BoolVar(&c.DevAuth, "dev-auth", c.DevAuth, "local development auth: any bearer token is accepted as the user id; on unless --tokens is given; never on a shared network")
	fs.StringVar(&c.ACLFile, "acl", c.ACLFile, "YAML access list of who may enter chat rooms, collab documents and game matches, like 'rooms: {ops: [alice, bob]}', 'documents: {plan: [alice]}', 'matches: {final: [carol]}'; a refused join/open gets an Error event PERMISSION_DENIED and the stream stays open; unlisted names are open to every user (default none: everything open)")
	fs.StringVar(&c.NATS, "nats", c.NATS, "clustered mode: URL of a NATS server with JetStream (nats://host:4222); chat rooms and collab documents live in JetStream streams and each game match has one owner instance (a JetStream KV lease), shared by every instance using it; exclusive with --db (default none: single instance)")
	fs.StringVar(&c.NATSEmbed, "nats-embed", c.NATSEmbed, "clustered mode: start an embedded NATS server with JetStream storing in this directory and use it as --nats does (other instances connect with --nats, or embed their own and join with --nats-cluster-listen/--nats-routes); exclusive with --nats and --db (default none)")
	fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, "client address of the --nats-embed server (port 0 picks a free one; the URL is printed as storage=jetstream:URL)")
	fs.StringVar(&c.NATSServerName, "nats-server-name", c.NATSServerName, "name of the --nats-embed server; unique in its cluster and the same at every restart (JetStream knows peers by it) (default bidikit-embedded, or bidikit-HOSTNAME-PORT with --nats-cluster-listen's port)")
	fs.StringVar(&c.NATSClusterListen, "nats-cluster-listen", c.NATSClusterListen, "route address (host:port, e.g. 127.0.0.1:6222) of the --nats-embed server: with --nats-routes it joins a JetStream cluster of embedded servers, so that with --nats-replicas 3 losing one of three instances loses nothing (default none: a standalone server)")
	fs.StringSliceVar(&c.NATSRoutes, "nats-routes", c.NATSRoutes, "comma-separated seed routes (nats-route://host:port) of the --nats-embed cluster; give every member the same list, its own address included; the cluster serves once a majority of them is up (default none; required with --nats-cluster-listen)")
	fs.StringVar(&c.NATSStorage, "nats-storage", c.NATSStorage, "JetStream storage of chat room and collab document streams: file or memory")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", c.NATSReplicas, "replicas of each room and document stream and of the match-owner bucket (1 for one NATS server, 3 for a JetStream cluster)")
	fs.Uint32Var(&o.MaxConcurrentStreams, "max-concurrent-streams", o.MaxConcurrentStreams, "most open streams per connection; further streams wait for a free slot")
	fs.IntVar(&o.MaxConnections, "max-connections", o.MaxConnections, "most open client connections; one over the limit is closed at once and counted")
	fs.IntVar(&o.MaxRecvMsgSize, "max-recv-msg-size", o.MaxRecvMsgSize, "largest message accepted, in bytes; a larger one ends its stream with RESOURCE_EXHAUSTED")
	fs.Uint32Var(&o.MaxHeaderListSize, "max-header-list-size", o.MaxHeaderListSize, "largest request metadata (HTTP/2 header list) accepted, in bytes; more fails the call with INTERNAL")
	fs.IntVar(&o.ReadBufferSize, "read-buffer-size", o.ReadBufferSize, "size of a connection's read buffer in bytes, lent from a pool only while read bytes wait to be parsed (an idle connection holds none; write buffers are shared between connections too); larger reads a burst in fewer syscalls")
	fs.DurationVar(&o.Keepalive.Time, "keepalive-time", o.Keepalive.Time, "ping a connection idle this long (with --keepalive-timeout: how fast a vanished client is detected)")
	fs.DurationVar(&o.Keepalive.Timeout, "keepalive-timeout", o.Keepalive.Timeout, "close a connection whose ping is not answered within this")
	fs.DurationVar(&o.KeepalivePolicy.MinTime, "keepalive-min-time", o.KeepalivePolicy.MinTime, "clients pinging more often than this are disconnected (GOAWAY ENHANCE_YOUR_CALM)")
	fs.DurationVar(&o.GracePeriod, "grace", o.GracePeriod, "graceful shutdown bound: streams get UNAVAILABLE after their acknowledged work is flushed, then the server stops hard")
	o.H2Limits.RegisterFlags(fs) // HTTP/2 flood guard (h2limits.go)
	c.Chat.RegisterFlags(fs)
	c.Collab.RegisterFlags(fs)
	c.Game.RegisterFlags(fs)
	for _, ff := range flagFields {
		validate.BindFlag(fs, ff[0], ff[1])
	}
	c.flags = fs
}

// Finish settles flag interactions after fs was parsed: --tokens without an
// explicit --dev-auth turns development auth off. It then checks c; the
// error names fs's flags (validate.FlagError) where Check names fields.
func (c *Config) Finish(fs *pflag.FlagSet) error {
	if c.TokensFile != "" && !fs.Changed("dev-auth") {
		c.DevAuth = false
	}
	return validate.FlagError(fs, c.Check())
}

// Check reports a configuration that cannot work as a
// *validate.SettingError naming the field(s).
func (c *Config) Check() error {
	o := &c.Options
	switch {
	case c.TokensFile != "" && c.DevAuth:
		return &validate.SettingError{Field: "DevAuth", Also: []string{"TokensFile"}, Reason: "exclude each other: pick one"}
	case c.TokensFile == "" && !c.DevAuth:
		return &validate.SettingError{Field: "TokensFile", Also: []string{"DevAuth"},
			Reason: "is empty and {} is off: no authentication; give a tokens file, or development auth for local use"}
	case (c.NATS != "" || c.NATSEmbed != "") && c.DB != "":
		return &validate.SettingError{Field: "DB", Also: []string{"NATS", "NATSEmbed"},
			Reason: "is set with {} or {}: they exclude each other (in clustered mode rooms and documents live in JetStream)"}
	case c.NATS != "" && c.NATSEmbed != "":
		return &validate.SettingError{Field: "NATS", Also: []string{"NATSEmbed"},
			Reason: "exclude each other: connect to a NATS server, or start one"}
	case c.NATSStorage != "file" && c.NATSStorage != "memory":
		return validate.Settingf("NATSStorage", "is %q, want file or memory", c.NATSStorage)
	case c.NATSReplicas < 1 || c.NATSReplicas > 5:
		return validate.Settingf("NATSReplicas", "is %d, want 1..5", c.NATSReplicas)
	case c.NATSEmbed == "" && (c.NATSServerName != "" || c.NATSClusterListen != "" || len(c.NATSRoutes) > 0):
		return &validate.SettingError{Field: "NATSServerName", Also: []string{"NATSEmbed", "NATSClusterListen", "NATSRoutes"},
			Reason: "configure the embedded NATS server: give {} DIR too"}
	case c.NATSEmbed != "" && c.embedConfig().Check() != nil:
		return validate.RenameFields(c.embedConfig().Check(), embedFields)
	case c.NATSEmbed != "" && c.NATSClusterListen == "" && c.NATSReplicas > 1:
		return &validate.SettingError{Field: "NATSReplicas", Also: []string{"NATSEmbed", "NATSClusterListen", "NATSRoutes"},
			Reason: fmt.Sprintf("is %d, but a standalone {} server holds 1 replica: add {} and {} to form a cluster", c.NATSReplicas)}
	case o.Addr == "":
		return validate.Settingf("Options.Addr", "is empty")
	case !isHostPort(o.Addr):
		return validate.Settingf("Options.Addr", "is %q, want host:port (e.g. 127.0.0.1:7070)", o.Addr)
	case o.AdminAddr != "" && !isHostPort(o.AdminAddr):
		return validate.Settingf("Options.AdminAddr", "is %q, want host:port (e.g. 127.0.0.1:7071), or \"\" to disable it", o.AdminAddr)
	case o.ReadBufferSize < 1:
		return validate.Settingf("Options.ReadBufferSize", "is %d, want >= 1", o.ReadBufferSize)
	case o.MaxConnections < 1:
		return validate.Settingf("Options.MaxConnections", "is %d, want >= 1", o.MaxConnections)
	case o.MaxRecvMsgSize < 1:
		return validate.Settingf("Options.MaxRecvMsgSize", "is %d, want >= 1", o.MaxRecvMsgSize)
	case o.MaxConcurrentStreams < 1:
		return validate.Settingf("Options.MaxConcurrentStreams", "is 0, want >= 1")
	case o.MaxHeaderListSize < 1:
		return validate.Settingf("Options.MaxHeaderListSize", "is 0, want >= 1")
	case o.Keepalive.Time < time.Second:
		return validate.Settingf("Options.Keepalive.Time", "is %v, want >= 1s (gRPC's minimum)", o.Keepalive.Time)
	case o.Keepalive.Timeout <= 0:
		return validate.Settingf("Options.Keepalive.Timeout", "is %v, want > 0", o.Keepalive.Timeout)
	case o.KeepalivePolicy.MinTime <= 0:
		return validate.Settingf("Options.KeepalivePolicy.MinTime", "is %v, want > 0", o.KeepalivePolicy.MinTime)
	case o.GracePeriod <= 0:
		return validate.Settingf("Options.GracePeriod", "is %v, want > 0", o.GracePeriod)
	}
	if _, err := o.H2Limits.withDefaults(); err != nil {
		return err
	}
	return nil
}

// embedFields maps cluster.EmbedConfig's field names to Config's.
var embedFields = map[string]string{
	"EmbedConfig.Dir":           "NATSEmbed",
	"EmbedConfig.Listen":        "NATSListen",
	"EmbedConfig.ServerName":    "NATSServerName",
	"EmbedConfig.ClusterListen": "NATSClusterListen",
	"EmbedConfig.Routes":        "NATSRoutes",
}

// flagFields binds each flag RegisterFlags defines for Config's own fields
// and Options to the field it sets (the services bind theirs).
var flagFields = [][2]string{
	{"addr", "Options.Addr"}, {"admin-addr", "Options.AdminAddr"}, {"db", "DB"}, {"tokens", "TokensFile"},
	{"dev-auth", "DevAuth"}, {"acl", "ACLFile"}, {"nats", "NATS"}, {"nats-embed", "NATSEmbed"},
	{"nats-listen", "NATSListen"}, {"nats-server-name", "NATSServerName"},
	{"nats-cluster-listen", "NATSClusterListen"}, {"nats-routes", "NATSRoutes"},
	{"nats-storage", "NATSStorage"}, {"nats-replicas", "NATSReplicas"},
	{"max-concurrent-streams", "Options.MaxConcurrentStreams"}, {"max-connections", "Options.MaxConnections"},
	{"max-recv-msg-size", "Options.MaxRecvMsgSize"}, {"max-header-list-size", "Options.MaxHeaderListSize"},
	{"read-buffer-size", "Options.ReadBufferSize"}, {"keepalive-time", "Options.Keepalive.Time"},
	{"keepalive-timeout", "Options.Keepalive.Timeout"}, {"keepalive-min-time", "Options.KeepalivePolicy.MinTime"},
	{"grace", "Options.GracePeriod"},
}

// ConfigError marks a Build failure caused by the configuration itself (a
// field's value, a file a field names), as opposed to the environment. Err
// holds a *validate.SettingError naming the field (or, for a Config bound to
// flags by RegisterFlags, the flag).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Build opens storage, builds the services and the Server. The Server owns
// the storage: it is closed after the services at shutdown (or when Start
// fails). Build logs how the server is set up, including the warnings for
// memory storage and development auth. log nil means slog.Default().
func Build(cfg Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Check(); err != nil {
		return nil, cfg.configError(err)
	}
	opts := cfg.Options
	opts.Logger = log
	if opts.AdminAddr == "" {
		opts.DisableAdmin = true
	}
	if cfg.DevAuth {
		opts.Authenticator = auth.DevMode{}
		log.Warn("--dev-auth: any bearer token is accepted as the user id; use --tokens FILE on a shared network")
	} else {
		tokens, err := auth.LoadTokens(cfg.TokensFile)
		if err != nil {
			return nil, cfg.configError(validate.SettingErr("TokensFile", err))
		}
		opts.Authenticator = tokens
		log.Info("auth: bearer tokens", "file", cfg.TokensFile, "tokens", len(tokens))
	}
	var list *acl.ACL
	if cfg.ACLFile != "" {
		var err error
		if list, err = acl.Load(cfg.ACLFile); err != nil {
			return nil, cfg.configError(validate.SettingErr("ACLFile", err))
		}
		log.Info("acl loaded", "file", cfg.ACLFile)
	}

	clustered := cfg.NATS != "" || cfg.NATSEmbed != ""
	var st store.Store
	storage := "memory"
	if cfg.DB == "" {
		st = store.NewMemory(cfg.Chat.History) // unused in clustered mode
		if !clustered {
			log.Warn("no --db: messages are kept in memory only and lost on exit", "retained_per_room", cfg.Chat.History)
		}
	} else {
		db, err := store.OpenSQLite(cfg.DB, store.WithLogger(log))
		if err != nil {
			return nil, cfg.fieldError(validate.SettingErr("DB", err))
		}
		st, storage = db, "sqlite:"+cfg.DB
		log.Info("storage: SQLite (durable)", "db", cfg.DB)
	}
	// closers release what Build opened, in order, after the services.
	closers := []func() error{}
	closeAll := func() {
		for _, c := range closers {
			_ = c()
		}
		_ = st.Close()
	}
	var shared *cluster.Log // chat rooms; docs holds collab documents
	var docs *cluster.Log
	var hub *gamehub.Hub // game matches
	if clustered {
		lg, url, cl, err := openCluster(cfg, log)
		closers = append(closers, cl...)
		if err != nil {
			closeAll()
			return nil, err
		}
		shared = lg
		if docs, err = lg.ForKind("collab"); err != nil {
			closeAll()
			return nil, err
		}
		closers = append([]func() error{docs.Close}, closers...)
		// Matches travel on their own connection: per-tick traffic does not
		// queue behind chat and collab appends.
		gnc, err := cluster.Connect(url, "bidikit serve (game)", log)
		if err != nil {
			closeAll()
			return nil, cfg.fieldError(validate.SettingErr("NATS", err))
		}
		closers = append([]func() error{func() error { gnc.Close(); return nil }}, closers...)
		hcfg := gamehub.DefaultConfig()
		hcfg.Replicas = cfg.NATSReplicas
		if hub, err = gamehub.New(gnc, hcfg, log.With("component", "gamehub")); err != nil {
			closeAll()
			return nil, cfg.fieldError(validate.SettingErr("NATS", err))
		}
		storage = "jetstream:" + url
	}

	opts.Registry, opts.Metrics = NewRegistry()
	var services []service.Service
	fail := func(err error) (*Server, error) {
		for _, svc := range services {
			_ = svc.Close()
		}
		closeAll()
		return nil, err
	}
	var chatSvc *chat.Service
	var err error
	if shared != nil {
		chatSvc, err = chat.NewShared(cfg.Chat, shared, opts.Metrics, list.Rooms(), log)
	} else {
		chatSvc, err = chat.New(cfg.Chat, st, opts.Metrics, list.Rooms(), log)
	}
	if err != nil {
		return fail(cfg.configError(err))
	}
	services = append(services, chatSvc)
	if list != nil {
		// --acl guards documents and matches as it does rooms; it replaces
		// any Access hook set in cfg.
		cfg.Collab.Access = list.Documents()
		cfg.Game.Access = list.Matches()
	}
	var collabSvc *collab.Service
	if docs != nil {
		collabSvc, err = collab.NewShared(cfg.Collab, docs, opts.Metrics, log.With("service", "collab"))
	} else {
		collabSvc, err = collab.New(cfg.Collab, st, opts.Metrics, log.With("service", "collab"))
	}
	if err != nil {
		return fail(cfg.configError(err))
	}
	services = append(services, collabSvc)
	var gameSvc *game.Service
	if hub != nil {
		gameSvc, err = game.NewShared(cfg.Game, hub, opts.Metrics, log.With("service", "game"))
	} else {
		gameSvc, err = game.New(cfg.Game, opts.Metrics, log.With("service", "game"))
	}
	if err != nil {
		return fail(cfg.configError(err))
	}
	services = append(services, gameSvc)
	srv, err := New(opts, services...)
	if err != nil {
		return fail(err)
	}
	srv.storage = storage
	srv.closers = append(srv.closers, closers...)
	srv.closers = append(srv.closers, st.Close)
	return srv, nil
}

// configError wraps err, a configuration problem, in a *ConfigError; its
// field names become flag names when c is bound to flags.
func (c *Config) configError(err error) *ConfigError {
	return &ConfigError{c.fieldError(err)}
}

// fieldError returns err naming flags instead of fields when c is bound to
// flags (RegisterFlags), else err.
func (c *Config) fieldError(err error) error { return validate.FlagError(c.flags, err) }

// openCluster connects to (or starts, with --nats-embed) the NATS server
// and opens the JetStream room log. It returns the closers of what it
// opened, in closing order, even when it fails.
func openCluster(cfg Config, log *slog.Logger) (*cluster.Log, string, []func() error, error) {
	var closers []func() error
	url := cfg.NATS
	if cfg.NATSEmbed != "" {
		e, err := cfg.embedConfig().Start(log)
		if err != nil {
			return nil, "", nil, cfg.configError(validate.RenameFields(err, embedFields))
		}
		url = e.ClientURL()
		closers = append(closers, e.Shutdown)
		log.Info("embedded NATS server with JetStream started", "url", url, "store_dir", cfg.NATSEmbed,
			"server_name", e.Name(), "cluster_listen", e.RouteURL(), "routes", cfg.NATSRoutes)
		if e.Clustered() {
			// A JetStream cluster answers once its meta group has a leader:
			// a majority of the --nats-routes servers must be up.
			log.Info("waiting for the JetStream cluster to elect a leader (start the other --nats-routes servers)", "bound", embedClusterWait)
			ctx, cancel := context.WithTimeout(context.Background(), embedClusterWait)
			err := e.WaitJetStreamReady(ctx)
			cancel()
			if err != nil {
				return nil, "", closers, cfg.fieldError(validate.SettingErr("NATSRoutes", err))
			}
			log.Info("JetStream cluster ready", "route_connections", e.Routes())
		}
	}
	nc, err := cluster.Connect(url, "bidikit serve", log)
	if err != nil {
		return nil, "", closers, cfg.fieldError(validate.SettingErr("NATS", err))
	}
	closeConn := func() error { nc.Close(); return nil }
	closers = append([]func() error{closeConn}, closers...)
	ccfg := cluster.DefaultConfig()
	ccfg.Memory = cfg.NATSStorage == "memory"
	ccfg.Replicas = cfg.NATSReplicas
	lg, err := cluster.New(nc, ccfg, log.With("component", "cluster"))
	if err != nil {
		return nil, "", closers, cfg.fieldError(validate.SettingErr("NATS", err))
	}
	closers = append([]func() error{lg.Close}, closers...)
	log.Info("storage: chat rooms and collab documents in NATS JetStream, game match owners in its KV, shared with every instance using it",
		"url", url, "stream_storage", cfg.NATSStorage, "replicas", cfg.NATSReplicas)
	return lg, url, closers, nil
}

// embedClusterWait bounds how long openCluster waits for the JetStream
// cluster of --nats-routes to elect its meta leader.
const embedClusterWait = 2 * time.Minute

// embedConfig is the --nats-embed server's configuration.
func (c *Config) embedConfig() cluster.EmbedConfig {
	return cluster.EmbedConfig{
		Dir:           c.NATSEmbed,
		Listen:        c.NATSListen,
		ServerName:    c.NATSServerName,
		ClusterListen: c.NATSClusterListen,
		Routes:        c.NATSRoutes,
	}
}

// StartDefault starts the standard reference server in-process for `bidikit
// run` without --target: free loopback ports for gRPC and admin, memory
// storage, development auth. It returns once the server listens; cancel ctx
// to shut it down and call Wait for the outcome.
func StartDefault(ctx context.Context, log *slog.Logger) (*Server, error) {
	return StartWith(ctx, log, nil)
}

// StartWith is StartDefault with the configuration changed by tune first
// (nil: none): the one way bidikit starts the reference in-process (`bidikit
// run`, the benchmarks' tuned server, the workshop's reference). tune may
// change anything but the addresses, which stay free loopback ports.
func StartWith(ctx context.Context, log *slog.Logger, tune func(*Config)) (*Server, error) {
	cfg := DefaultConfig()
	if tune != nil {
		tune(&cfg)
	}
	cfg.Options.Addr = "127.0.0.1:0"
	cfg.Options.AdminAddr = "127.0.0.1:0"
	srv, err := Build(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := srv.Start(ctx); err != nil {
		return nil, err
	}
	return srv, nil
}

// isHostPort reports whether addr splits into a host and a numeric port.
func isHostPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	_, err = strconv.ParseUint(port, 10, 16)
	return err == nil
}
