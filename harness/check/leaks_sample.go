package check

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// leakSource is one of the sources the leaks checker reads.
type leakSource int

const (
	srcGoroutines leakSource = iota // /debug/pprof/goroutine?debug=1, else /metrics go_goroutines
	srcHeap                         // /debug/pprof/heap?gc=1&debug=1 HeapInuse, else /metrics go_memstats_heap_inuse_bytes
	srcChannelz                     // gRPC channelz: open sockets and streams
	nSources
)

var sourceNames = [nSources]string{"goroutines", "heap", "channelz"}

func (s leakSource) String() string { return sourceNames[s] }

// sample is one reading of a server; a figure is -1 when its source did
// not answer, and errs[source] then says why ("" when it answered).
// profile is the goroutine profile when the goroutines came from pprof
// (nil when they came from /metrics or not at all).
type sample struct {
	goroutines int
	heap       int64
	sockets    int
	streams    int
	errs       [nSources]string
	profile    *goroutineProfile
}

// answered reports whether src gave its figures in s.
func (s sample) answered(src leakSource) bool {
	switch src {
	case srcGoroutines:
		return s.goroutines >= 0
	case srcHeap:
		return s.heap >= 0
	default:
		return s.sockets >= 0 && s.streams >= 0
	}
}

// Sample is one reading of a server's resources; a figure is -1 when its
// source did not answer, and Errors then says why, one "source: reason"
// per source that did not answer (goroutines, heap, channelz).
type Sample struct {
	Goroutines int
	HeapBytes  int64
	Sockets    int
	Streams    int
	Errors     []string
}

// Unanswered returns why the source of a figure (goroutines, heap,
// channelz) did not answer in s, or "" when it did or was not asked.
func (s Sample) Unanswered(source string) string {
	for _, e := range s.Errors {
		if rest, ok := strings.CutPrefix(e, source+": "); ok {
			return rest
		}
	}
	return ""
}

// Measure reads a server's goroutines and live heap (after a GC) through
// its admin endpoint, and open sockets and streams through env's channelz
// when env is not nil. It is what the leaks checker reads. It blocks for
// at most a few HTTP round trips of leakHTTPTimeout each (and env's
// channelz call).
func Measure(ctx context.Context, adminURL string, env Env) Sample {
	s := readSample(ctx, adminEnv{url: adminURL, env: env})
	out := Sample{Goroutines: s.goroutines, HeapBytes: s.heap, Sockets: s.sockets, Streams: s.streams}
	for src, e := range s.errs {
		if e != "" {
			out.Errors = append(out.Errors, leakSource(src).String()+": "+e)
		}
	}
	return out
}

// adminEnv overrides an Env's admin URL (env may be nil: no channelz).
type adminEnv struct {
	url string
	env Env
}

func (a adminEnv) AdminURL() string { return a.url }
func (a adminEnv) Channelz(ctx context.Context) (int, int, bool, error) {
	if a.env == nil {
		return 0, 0, false, nil
	}
	return a.env.Channelz(ctx)
}
func (a adminEnv) Healthy(ctx context.Context) (bool, error) {
	if a.env == nil {
		return false, nil
	}
	return a.env.Healthy(ctx)
}

// leakHTTPTimeout bounds one admin request of the leaks checker.
const leakHTTPTimeout = 5 * time.Second

var leakHTTP = &http.Client{Timeout: leakHTTPTimeout}

// leakGet fetches url's body (at most 64 MiB); a status other than 200 is
// an error naming the URL.
func leakGet(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := leakHTTP.Do(req)
	if err != nil {
		return "", err // *url.Error names the method and URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: reading the body: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), nil
}

// errNoAdminURL is why goroutines and heap are not read without an admin URL.
var errNoAdminURL = errors.New("no admin URL given (--admin-url http://host:port, serving /debug/pprof/ or /metrics)")

// readSample reads what the target exposes: goroutines and heap from the
// admin endpoint (pprof first, /metrics when pprof does not answer), open
// sockets and streams from channelz.
func readSample(ctx context.Context, env Env) sample {
	s := sample{goroutines: -1, heap: -1, sockets: -1, streams: -1}
	base := strings.TrimRight(env.AdminURL(), "/")
	if base == "" {
		s.errs[srcGoroutines], s.errs[srcHeap] = errNoAdminURL.Error(), errNoAdminURL.Error()
	} else {
		var pprofErrs [2]error
		if body, err := leakGet(ctx, base+"/debug/pprof/goroutine?debug=1"); err != nil {
			pprofErrs[0] = err
		} else if p, err := parseGoroutineProfile(body); err != nil {
			pprofErrs[0] = fmt.Errorf("%s/debug/pprof/goroutine?debug=1: %w", base, err)
		} else {
			s.goroutines, s.profile = p.total, &p
		}
		// gc=1 collects garbage first, so HeapInuse is live heap.
		if body, err := leakGet(ctx, base+"/debug/pprof/heap?gc=1&debug=1"); err != nil {
			pprofErrs[1] = err
		} else if n, ok := promOrPprofValue(body, "# HeapInuse = "); ok {
			s.heap = int64(n)
		} else {
			pprofErrs[1] = fmt.Errorf("%s/debug/pprof/heap?gc=1&debug=1 has no \"# HeapInuse = \" line", base)
		}
		if s.goroutines < 0 || s.heap < 0 {
			s.fromMetrics(ctx, base, pprofErrs)
		}
	}
	switch so, st, ok, err := env.Channelz(ctx); {
	case err != nil:
		s.errs[srcChannelz] = err.Error()
	case !ok:
		s.errs[srcChannelz] = "the target does not serve gRPC channelz"
	default:
		s.sockets, s.streams = so, st
	}
	return s
}

// fromMetrics fills the goroutines and heap that pprof did not give from
// base's Prometheus /metrics (go_goroutines, go_memstats_heap_inuse_bytes),
// recording both errors for a figure neither gave.
func (s *sample) fromMetrics(ctx context.Context, base string, pprofErrs [2]error) {
	body, merr := leakGet(ctx, base+"/metrics")
	for i, name := range []string{"go_goroutines ", "go_memstats_heap_inuse_bytes "} {
		if (i == 0 && s.goroutines >= 0) || (i == 1 && s.heap >= 0) {
			continue
		}
		err := merr
		if err == nil {
			if v, ok := promOrPprofValue(body, name); ok {
				if i == 0 {
					s.goroutines = int(v)
				} else {
					s.heap = int64(v)
				}
				continue
			}
			err = fmt.Errorf("%s/metrics has no %s", base, strings.TrimSpace(name))
		}
		s.errs[i] = fmt.Sprintf("%s; %s", pprofErrs[i], err)
	}
}

// promOrPprofValue returns the number after prefix on the first line of
// body that starts with it.
func promOrPprofValue(body, prefix string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 {
				return f, true
			}
		}
	}
	return 0, false
}
