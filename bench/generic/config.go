// Package generic benchmarks any gRPC bidi-streaming method through ghz's
// runner library (github.com/bojand/ghz/runner), adding what ghz lacks:
// per-message latency inside streams (ghz's stream interceptor hooks record
// each request's send time and the arrival of its response, one response
// per request in order, into an HDR histogram), connection faults through
// an in-process toxiproxy in front of the target (harness/fault), a leak
// verdict from the target's channelz, and `--vs ghz`: plain ghz on the same
// target, method, message and concurrency in alternating rounds.
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
	// Data is the request message as JSON (ghz templates like
	// {{.RequestNumber}} are executed per message).
	Data string
	// Metadata is a JSON object of request metadata.
	Metadata string
	// Target is host:port.
	Target string
	// Concurrency is the number of concurrent streams (ghz -c); Connections
	// the TCP connections they share (ghz --connections).
	Concurrency, Connections uint
	// Duration is each round's length (ghz -z).
	Duration time.Duration
	// StreamCallCount is how many messages each stream sends before it
	// half-closes (ghz --stream-call-count); 0 = until the round ends.
	StreamCallCount uint
	// StreamInterval pauses between a stream's messages (ghz
	// --stream-interval).
	StreamInterval time.Duration
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
	// DialTimeout bounds the preflight connection to the target.
	DialTimeout time.Duration
	// LeakSettle bounds how long the leak check waits for the target's
	// channelz sockets and streams to return to baseline.
	LeakSettle time.Duration
}

// Defaults returns c with zero fields set: concurrency 50 and one
// connection (ghz's defaults), 10 s rounds, one round, data "{}", 5 s dial
// timeout, 10 s leak settle.
func Defaults(c Config) Config {
	if c.Concurrency == 0 {
		c.Concurrency = 50
	}
	if c.Connections == 0 {
		c.Connections = 1
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Rounds <= 0 {
		c.Rounds = 1
	}
	if c.Data == "" {
		c.Data = "{}"
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.LeakSettle <= 0 {
		c.LeakSettle = 10 * time.Second
	}
	return c
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
	var js any
	if err := json.Unmarshal([]byte(c.Data), &js); err != nil && !strings.Contains(c.Data, "{{") {
		return usagef("--data is not JSON: %v", err)
	}
	if c.Metadata != "" {
		var md map[string]string
		if err := json.Unmarshal([]byte(c.Metadata), &md); err != nil {
			return usagef("--metadata: want a JSON object of strings like {\"authorization\":\"Bearer t\"}: %v", err)
		}
	}
	if c.Connections > c.Concurrency {
		return usagef("--connections %d is more than --concurrency %d", c.Connections, c.Concurrency)
	}
	if c.Vs != "" && c.Vs != "ghz" {
		return usagef("--vs %q: the only tool is ghz", c.Vs)
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
