package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/protoparse"
	"github.com/jhump/protoreflect/grpcreflect"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/bidikit/bidikit/bench"
	"github.com/bidikit/bidikit/bench/generic"
)

// maxListed bounds the methods or services a --call error lists.
const maxCallListed = 40

// benchWorkloads is the workload names, for suggestions.
func benchWorkloads() []string {
	var out []string
	for _, w := range bench.Workloads {
		out = append(out, w.Name)
	}
	return out
}

// runCall runs the generic driver (--call, or a --config naming the
// call). A ghz config's fields apply first where no flag for the same
// thing was given on the command line; then the connection flags and
// --token.
func (b *benchCmd) runCall(ctx context.Context, cmd *cobra.Command, args []string) error {
	fs := cmd.Flags()
	if len(args) > 0 {
		return usagef("--call and a workload (%s) exclude each other", args[0])
	}
	if b.spawn {
		return usagef("--spawn-server applies to conn-ramp; --call benchmarks the server at --target")
	}
	g, err := b.callConfig(fs)
	if err != nil {
		return err
	}
	if err := checkFormat(g.Format); err != nil {
		return err
	}
	bf := b.bf
	bf.format, bf.output = g.Format, g.Output
	res, err := generic.Run(ctx, g)
	if errors.Is(err, generic.ErrUsage) {
		return usageError{describeCall(ctx, err, g)}
	}
	if err != nil && !errors.Is(err, generic.ErrLeak) {
		return explain(ctx, err, []string{g.Target}, !g.Insecure)
	}
	if werr := writeBench(cmd.OutOrStdout(), cmd.ErrOrStderr(), []bench.Result{res}, bf); werr != nil {
		return werr
	}
	if err != nil {
		fmt.Fprintln(cmd.ErrOrStderr(), "bidikit:", err)
		return errChecksFailed
	}
	return nil
}

// callConfig is the generic driver's Config from the flags and --config:
// -z, --rate and --window only when given (they are shared with the
// workloads, whose defaults differ), -O and -o, --tags, then the config's
// settings for the flags not given, then the connection flags (unless the
// config chose TLS or plaintext and no connection flag was given).
func (b *benchCmd) callConfig(fs *pflag.FlagSet) (generic.Config, error) {
	g := b.g
	g.Duration = 0
	if fs.Changed("duration") {
		g.Duration = b.p.Duration
	}
	if fs.Changed("rate") {
		if b.p.Rate <= 0 {
			return g, usagef("--rate %v: want messages per second per stream, > 0 (leave it out for a saturating run)", b.p.Rate)
		}
		g.Rate = b.p.Rate
	}
	if fs.Changed("window") {
		if b.p.Window < 1 {
			return g, usagef("--window %d: want at least 1 message in flight per stream", b.p.Window)
		}
		g.Window = uint(b.p.Window)
	}
	g.Format, g.Output = b.bf.format, b.bf.output
	if b.tags != "" {
		if err := json.Unmarshal([]byte(b.tags), &g.Tags); err != nil {
			return g, usagef("--tags: want a JSON object of strings like {\"env\":\"ci\"}: %v", err)
		}
	}
	configTLS := false
	if b.config != "" {
		settings, err := generic.LoadGhzConfig(b.config)
		if err != nil {
			return g, usageError{err}
		}
		for _, s := range settings {
			if anyChanged(fs, s.Flags) {
				continue
			}
			s.Apply(&g)
			configTLS = configTLS || s.TLS
		}
	}
	if g.Call == "" {
		return g, usagef("--call is required (or a \"call\" in --config): the method as package.Service/Method")
	}
	setTLS := !configTLS || anyChanged(fs, []string{"insecure", "tls", "tls-ca", "tls-cert", "tls-key", "tls-server-name", "tls-skip-verify"})
	if err := callConn(&g, b.conn, setTLS); err != nil {
		return g, err
	}
	return g, nil
}

func anyChanged(fs *pflag.FlagSet, names []string) bool {
	for _, n := range names {
		if fs.Changed(n) {
			return true
		}
	}
	return false
}

// callConn puts the connection flags into the generic driver's config:
// with setTLS, plaintext unless a --tls* flag was given (ghz's default is
// TLS; bidikit's is plaintext everywhere); always --token as authorization
// metadata.
func callConn(g *generic.Config, c connFlags, setTLS bool) error {
	if setTLS {
		g.Insecure = !c.wantTLS()
		g.CACert, g.Cert, g.Key, g.ServerName, g.SkipVerify = c.tlsCA, c.tlsCert, c.tlsKey, c.tlsServerName, c.tlsSkipVerify
	}
	if c.token == "" {
		return nil
	}
	if g.MetadataFile != "" {
		return usagef("--token and --metadata-file: put the authorization in the file, or give --metadata")
	}
	md := map[string]string{}
	if g.Metadata != "" {
		if err := json.Unmarshal([]byte(g.Metadata), &md); err != nil {
			return usagef("--metadata: want a JSON object of strings like {\"x-tenant\":\"a\"}: %v", err)
		}
	}
	for k := range md {
		if strings.EqualFold(k, "authorization") {
			return usagef("--token and an authorization key in --metadata both set the token: give one")
		}
	}
	md["authorization"] = "Bearer " + c.token
	b, err := json.Marshal(md)
	if err != nil {
		return err
	}
	g.Metadata = string(b)
	return nil
}

// describeCall adds to a usage error about --call what the method's
// source offers: when the service is there but the method is not, its
// methods; when the service is not, the services. The source is --proto,
// --protoset or, without either, the target's reflection (asked once more,
// within the dial timeout). Other errors come back as they are.
func describeCall(ctx context.Context, err error, g generic.Config) error {
	if !strings.Contains(err.Error(), "--call "+g.Call+":") {
		return err
	}
	svc, method := splitCall(g.Call)
	services, source, lerr := listServices(ctx, g)
	if lerr != nil || len(services) == 0 {
		return err
	}
	if ms, ok := services[svc]; ok {
		if method != "" {
			for _, m := range ms {
				if m.GetName() == method {
					return err // there: the error is about something else
				}
			}
		}
		names := make([]string, 0, len(ms))
		plain := make([]string, 0, len(ms))
		for _, m := range ms {
			names = append(names, fmt.Sprintf("%s (%s)", m.GetName(), streamKind(m)))
			plain = append(plain, m.GetName())
		}
		return fmt.Errorf("--call %s: service %s has no method %q%s; its methods (%s): %s",
			g.Call, svc, method, didYouMean(method, plain), source, listBounded(names))
	}
	names := make([]string, 0, len(services))
	for name := range services {
		names = append(names, name)
	}
	sort.Strings(names)
	return fmt.Errorf("--call %s: no service %q%s; services (%s): %s", g.Call, svc, didYouMean(svc, names), source, listBounded(names))
}

// splitCall reads "pkg.Svc/Method" or "pkg.Svc.Method".
func splitCall(call string) (svc, method string) {
	if i := strings.LastIndex(call, "/"); i >= 0 {
		return call[:i], call[i+1:]
	}
	if i := strings.LastIndex(call, "."); i >= 0 {
		return call[:i], call[i+1:]
	}
	return call, ""
}

// streamKind says how a method streams.
func streamKind(m *desc.MethodDescriptor) string {
	switch {
	case m.IsClientStreaming() && m.IsServerStreaming():
		return "bidi streaming"
	case m.IsClientStreaming():
		return "client streaming"
	case m.IsServerStreaming():
		return "server streaming"
	}
	return "unary"
}

func listBounded(items []string) string {
	if len(items) <= maxCallListed {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:maxCallListed], ", ") + fmt.Sprintf(" and %d more", len(items)-maxCallListed)
}

// listServices returns every service the --call source describes, with its
// methods, and names the source.
func listServices(ctx context.Context, g generic.Config) (map[string][]*desc.MethodDescriptor, string, error) {
	out := map[string][]*desc.MethodDescriptor{}
	addFiles := func(fds []*desc.FileDescriptor) {
		for _, fd := range fds {
			for _, sd := range fd.GetServices() {
				out[sd.GetFullyQualifiedName()] = sd.GetMethods()
			}
		}
	}
	switch {
	case g.Proto != "":
		p := protoparse.Parser{ImportPaths: g.ImportPaths}
		fds, err := p.ParseFiles(g.Proto)
		if err != nil {
			return nil, "", err
		}
		addFiles(fds)
		return out, "in " + g.Proto, nil
	case g.Protoset != "":
		b, err := os.ReadFile(g.Protoset)
		if err != nil {
			return nil, "", err
		}
		var set descriptorpb.FileDescriptorSet
		if err := proto.Unmarshal(b, &set); err != nil {
			return nil, "", err
		}
		fds, err := desc.CreateFileDescriptorsFromSet(&set)
		if err != nil {
			return nil, "", err
		}
		for _, fd := range fds {
			addFiles([]*desc.FileDescriptor{fd})
		}
		return out, "in " + g.Protoset, nil
	}
	creds, err := g.TransportCredentials()
	if err != nil {
		creds = insecure.NewCredentials()
	}
	cc, err := grpc.NewClient(g.Target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, "", err
	}
	defer cc.Close()
	timeout := g.DialTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if md := g.MetadataMap(); md != nil {
		rctx = metadata.NewOutgoingContext(rctx, metadata.New(md))
	}
	rc := grpcreflect.NewClientAuto(rctx, cc)
	defer rc.Reset()
	names, err := rc.ListServices()
	if err != nil {
		return nil, "", err
	}
	var errs []error
	for _, name := range names {
		sd, err := rc.ResolveService(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[name] = sd.GetMethods()
	}
	if len(out) == 0 {
		return nil, "", errors.Join(errs...)
	}
	return out, "by reflection on " + g.Target, nil
}
