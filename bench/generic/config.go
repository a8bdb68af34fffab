// Package generic benchmarks any gRPC bidi-streaming method: `bidikit
// bench --call`. Its driver is bidikit's own (driver.go, stream.go): the
// method is resolved through harness/protocol (server reflection, a
// protoset, or .proto sources compiled at run time), each request is
// encoded once and sent as bytes, responses are timed but not decoded, and
// each stream runs in one of three modes (Mode): saturating (send without
// waiting: a throughput figure, its latency is the driver's own backlog),
// paced (open loop at --rate per stream, latency from each message's
// scheduled send time: corrected for coordinated omission) or windowed (at
// most --window messages in flight per stream). The flags and a ghz JSON
// config (LoadGhzConfig) keep ghz's names. Around the load: connection
// faults through an in-process toxiproxy (harness/fault), a leak verdict
// from the target's channelz, and `--vs ghz`: ghz's runner
// (github.com/bojand/ghz) on the same target, method, data and
// concurrency in alternating rounds, refused when the two would not do the
// same work (CompareRefusal).
package generic

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Config is one generic benchmark. Defaults first: see Defaults.
type Config struct {
	// Call is the method, "package.Service/Method" (or
	// "package.Service.Method").
	Call string
	// Proto and ImportPaths, or Protoset, describe the method; when all are
	// empty the target's server reflection is used.
	Proto       string
	ImportPaths []string
	Protoset    string
	// Data is the request message as JSON, or a JSON array of messages
	// that each call sends in turn (ghz templates like {{.RequestNumber}}
	// are executed per call, per message with StreamDynamicMessages).
	// DataFile (ghz -D) is read into Data by Resolve.
	Data     string
	DataFile string
	// StreamDynamicMessages runs the data template for every message
	// (ghz --stream-dynamic-messages).
	StreamDynamicMessages bool
	// Metadata is a JSON object of request metadata; MetadataFile (ghz -M)
	// is read into it by Resolve. ReflectMetadata, when set, is sent on
	// server reflection requests instead of Metadata.
	Metadata        string
	MetadataFile    string
	ReflectMetadata map[string]string
	// Target is host:port.
	Target string
	// Concurrency is the number of concurrent streams (ghz -c); Connections
	// the TCP connections they share (ghz --connections).
	Concurrency, Connections uint
	// Total is how many calls to make in a round (ghz -n: its "requests"
	// are calls; each sends StreamCallCount messages, so the round sends
	// Total x StreamCallCount). 0 = rounds last Duration.
	Total uint
	// Duration is each round's length (ghz -z) when Total is 0.
	Duration time.Duration
	// MaxDuration bounds a Total round (ghz -x): it ends then even if
	// calls are left.
	MaxDuration time.Duration
	// StreamCallCount is how many messages each stream sends before it
	// half-closes (ghz --stream-call-count); 0 = until the round ends.
	StreamCallCount uint
	// StreamInterval pauses after each message a stream sends (ghz
	// --stream-interval); only with neither Rate nor Window.
	StreamInterval time.Duration
	// Rate paces every stream open-loop at this many messages per second
	// (ModePaced); Window lets at most this many messages per stream wait
	// for their response (ModeWindowed). Neither: ModeSaturating.
	Rate   float64
	Window uint
	// Insecure dials without TLS; otherwise TLS with CACert (PEM file, ""
	// = system roots), the client certificate Cert/Key, ServerName and
	// SkipVerify.
	Insecure                      bool
	CACert, Cert, Key, ServerName string
	SkipVerify                    bool
	// Faults are connection faults applied through a toxiproxy proxy in
	// front of Target for the whole run, e.g. "latency=50ms" (see
	// ParseFault).
	Faults []string
	// Vs is "" or "ghz": also run plain ghz in alternating rounds.
	Vs string
	// Rounds is how many rounds each tool runs (alternating when Vs is set).
	Rounds int
	// DialTimeout bounds the preflight connection to the target (ghz
	// --connect-timeout).
	DialTimeout time.Duration
	// DrainTimeout bounds how long a round waits, once it has stopped
	// sending, for the calls in flight to end before cancelling them.
	DrainTimeout time.Duration
	// LeakSettle bounds how long the leak check waits for the target's
	// channelz sockets and streams to return to baseline.
	LeakSettle time.Duration
	// Output and Format are where and how the CLI writes the result (ghz
	// -o and -O); Name and Tags label it (ghz --name, --tags). Run only
	// copies Name and Tags into the result's params.
	Output, Format string
	Name           string
	Tags           map[string]string
}

// Defaults returns c with zero fields set: concurrency 50 and one
// connection (ghz's defaults), 10 s rounds unless Total bounds them, one
// round, data "{}", 5 s dial timeout, 10 s drain timeout and leak settle.
func Defaults(c Config) Config {
	if c.Concurrency == 0 {
		c.Concurrency = 50
	}
	if c.Connections == 0 {
		c.Connections = 1
	}
	if c.Duration <= 0 && c.Total == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Data == "" && c.DataFile == "" {
		c.Data = "{}"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 10 * time.Second
	}
	if c.LeakSettle <= 0 {
		c.LeakSettle = 10 * time.Second
	}
	return c
}

// Resolve reads DataFile and MetadataFile into Data and Metadata. Errors
// name the flag and the file.
func (c Config) Resolve() (Config, error) {
	if c.DataFile != "" {
		if c.Data != "" {
			return c, usagef("--data and --data-file (-D) exclude each other: give one")
		}
		b, err := os.ReadFile(c.DataFile)
		if err != nil {
			return c, usagef("--data-file %q: %v", c.DataFile, err)
		}
		c.Data = string(b)
	}
	if c.MetadataFile != "" {
		if c.Metadata != "" {
			return c, usagef("--metadata and --metadata-file (-M) exclude each other: give one")
		}
		b, err := os.ReadFile(c.MetadataFile)
		if err != nil {
			return c, usagef("--metadata-file %q: %v", c.MetadataFile, err)
		}
		c.Metadata = string(b)
	}
	return c, nil
}

var callRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+[/.][A-Za-z_][A-Za-z0-9_]*$`)

// ErrUsage marks configuration errors (exit status 2 in the CLI).
var ErrUsage = errors.New("usage")

func usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Validate reports a configuration that cannot work, naming the flag. It
// checks files exist but does not touch the network.
func (c Config) Validate() error {
	if c.Call == "" {
		return usagef("--call is required: the method as package.Service/Method, e.g. grpc.testing.TestService/FullDuplexCall")
	}
	if !callRE.MatchString(c.Call) {
		return usagef("--call %q: want package.Service/Method, e.g. grpc.testing.TestService/FullDuplexCall", c.Call)
	}
	if c.Proto != "" && c.Protoset != "" {
		return usagef("--proto and --protoset exclude each other: pick one (or neither, for server reflection)")
	}
	for flag, path := range map[string]string{"--proto": c.Proto, "--protoset": c.Protoset, "--cacert": c.CACert, "--cert": c.Cert, "--key": c.Key} {
		if path == "" {
			continue
		}
		if st, err := os.Stat(path); err != nil {
			return usagef("%s %q: no such file", flag, path)
		} else if st.IsDir() {
			return usagef("%s %q is a directory, want a file", flag, path)
		}
	}
	if (c.Cert == "") != (c.Key == "") {
		return usagef("--cert and --key go together")
	}
	if c.Insecure && (c.CACert != "" || c.Cert != "" || c.SkipVerify || c.ServerName != "") {
		return usagef("--insecure excludes the TLS flags (--tls-ca, --tls-cert, --tls-key, --tls-server-name, --tls-skip-verify; ghz: --cacert, --cert, --key, --cname, --skipTLS)")
	}
	if !strings.Contains(c.Data, "{{") && !json.Valid([]byte(c.Data)) {
		var js any
		return usagef("--data is not JSON: %v", json.Unmarshal([]byte(c.Data), &js))
	}
	if c.Metadata != "" && !strings.Contains(c.Metadata, "{{") {
		if _, err := decodeMetadata([]byte(c.Metadata)); err != nil {
			return usagef("%v", err)
		}
	}
	if c.Connections > c.Concurrency {
		return usagef("--connections %d is more than --concurrency %d", c.Connections, c.Concurrency)
	}
	if err := c.validateLoad(); err != nil {
		return err
	}
	if c.Vs != "" && c.Vs != "ghz" {
		return usagef("--vs %q: the only tool is ghz", c.Vs)
	}
	if c.Vs == "ghz" {
		if why := CompareRefusal(c); why != "" {
			return usagef("--vs ghz refused: %s", why)
		}
	}
	for _, f := range c.Faults {
		if _, err := ParseFault(f); err != nil {
			return usagef("--fault %q: %v", f, err)
		}
	}
	return nil
}

// MetadataMap decodes Metadata (validated) into a map.
func (c Config) MetadataMap() map[string]string {
	if c.Metadata == "" {
		return nil
	}
	var md map[string]string
	_ = json.Unmarshal([]byte(c.Metadata), &md)
	return md
}

// TransportCredentials builds the dial credentials of c.
func (c Config) TransportCredentials() (credentials.TransportCredentials, error) {
	if c.Insecure {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{ServerName: c.ServerName, InsecureSkipVerify: c.SkipVerify} //nolint:gosec // --tls-skip-verify (ghz: --skipTLS) is the user's explicit choice
	if c.CACert != "" {
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %q holds no PEM certificate", c.CACert)
		}
		cfg.RootCAs = pool
	}
	if c.Cert != "" {
		kp, err := tls.LoadX509KeyPair(c.Cert, c.Key)
		if err != nil {
			return nil, fmt.Errorf("--cert/--key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return credentials.NewTLS(cfg), nil
}

// Preflight connects to target and waits until the connection is ready or
// timeout passes; its error says the target is unreachable and why. The
// returned connection is the caller's to close.
func Preflight(ctx context.Context, target string, creds credentials.TransportCredentials, timeout time.Duration) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return cc, nil
		}
		if !cc.WaitForStateChange(ctx, s) {
			_ = cc.Close()
			return nil, fmt.Errorf("target %s unreachable: no connection within %v (last state %s)", target, timeout, s)
		}
	}
}
