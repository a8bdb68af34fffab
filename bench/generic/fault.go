package generic

import (
	"context"
	"fmt"
	"sort"
	"strings"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/bidikit/bidikit/internal/strictyaml"

	"github.com/bidikit/bidikit/harness/fault"
)

// primaryParam is the parameter a "name=value" fault flag sets.
var primaryParam = map[string]string{
	"latency":   "latency",
	"bandwidth": "rate",
	"reset":     "timeout",
	"blackhole": "timeout",
	"slicer":    "average_size",
}

// ParseFault builds the connection fault a --fault flag names. Forms:
//
//	latency=50ms                      the fault's main parameter
//	latency:latency=50ms,jitter=5ms   any parameters, by their scenario names
//	reset                             the fault's defaults
//
// Only connection-level faults (they act on the toxiproxy proxy in front of
// the target) are accepted; they last for the whole run unless a duration
// parameter says otherwise.
func ParseFault(s string) (fault.Fault, error) {
	name, rest, hasParams := strings.Cut(s, ":")
	params := map[string]string{}
	if !hasParams {
		if n, v, ok := strings.Cut(s, "="); ok {
			name = n
			p, known := primaryParam[n]
			if !known {
				return nil, fmt.Errorf("fault %q has no main parameter: write %s:key=value,...", n, n)
			}
			params[p] = v
		}
	} else {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("parameter %q: want key=value", kv)
			}
			params[k] = v
		}
	}
	spec, ok := fault.Lookup(name)
	if !ok {
		return nil, fmt.Errorf("unknown fault %q (connection faults: %s)", name, strings.Join(connectionFaults(), ", "))
	}
	if spec.Scope != fault.Connection {
		return nil, fmt.Errorf("fault %q acts on streams or the server process; bench applies connection faults only (%s)", name, strings.Join(connectionFaults(), ", "))
	}
	var keys []string
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var doc strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&doc, "%s: %s\n", k, params[k])
	}
	f, _, err := fault.New(name, func(into any) error {
		if doc.Len() == 0 {
			return nil
		}
		return strictyaml.Decode("--fault "+name, []byte(doc.String()), into)
	})
	return f, err
}

func connectionFaults() []string {
	var out []string
	for _, n := range fault.Names() {
		if s, _ := fault.Lookup(n); s.Scope == fault.Connection {
			out = append(out, n)
		}
	}
	return out
}

// proxyEnv is the fault.Env of a bench run: the proxy, no server control.
type proxyEnv struct{ p *toxiproxy.Proxy }

func (e proxyEnv) Proxy() *toxiproxy.Proxy { return e.p }
func (e proxyEnv) Server() fault.Server    { return nil }

// StartFaults starts a toxiproxy proxy in front of target and injects every
// fault into it for as long as ctx lives. It returns the address clients
// should dial and stop, which removes the faults and closes the proxy.
// Without faults it returns target and a no-op stop.
func StartFaults(ctx context.Context, target string, specs []string) (string, func(), error) {
	if len(specs) == 0 {
		return target, func() {}, nil
	}
	p, stop, err := fault.StartProxy(ctx, target)
	if err != nil {
		return "", nil, err
	}
	for _, s := range specs {
		f, err := ParseFault(s)
		if err != nil {
			stop()
			return "", nil, fmt.Errorf("--fault %q: %w", s, err)
		}
		if err := f.Inject(ctx, proxyEnv{p}, nil); err != nil {
			stop()
			return "", nil, fmt.Errorf("--fault %q: %w", s, err)
		}
	}
	return p.Listen, stop, nil
}
