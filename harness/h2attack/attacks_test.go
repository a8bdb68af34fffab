package h2attack_test

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/net/http2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/bidikit/bidikit/harness/h2attack"
)

// observed collects an attack's observations (bounded: an attack reports
// a handful per connection and second).
type observed struct {
	mu  sync.Mutex
	all []h2attack.Observation
}

func (o *observed) report(ob h2attack.Observation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.all) < 10_000 {
		o.all = append(o.all, ob)
	}
}

func (o *observed) kinds() []h2attack.ObservationKind {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []h2attack.ObservationKind
	for _, ob := range o.all {
		out = append(out, ob.Kind)
	}
	return out
}

func (o *observed) find(k h2attack.ObservationKind) *h2attack.Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range o.all {
		if o.all[i].Kind == k {
			ob := o.all[i]
			return &ob
		}
	}
	return nil
}

// attackCase runs one attack against a fresh test server and hands the
// result to verify.
type attackCase struct {
	params    h2attack.Params
	sendBytes int64 // what the server's handler tries to write per stream
	tls       bool
	verify    func(res h2attack.Result, srv *testServer, obs *observed)
}

const short = 1500 * time.Millisecond

var _ = DescribeTable("each attack against grpc-go with the reference's limits: the server's answer shows in the result and the observations",
	func(ctx SpecContext, c attackCase) {
		var srvTLS, cliTLS *tls.Config
		if c.tls {
			srvTLS, cliTLS = selfSigned()
		}
		srv := startServer(c.sendBytes, srvTLS)
		obs := &observed{}
		res, err := c.params.Run(ctx, h2attack.Target{Addr: srv.addr, TLS: cliTLS}, h2attack.Request{Path: attackPath}, obs.report)
		Expect(err).NotTo(HaveOccurred())
		GinkgoWriter.Println(res.Summary())
		Expect(res.Connections).To(BeNumerically(">=", 1))
		Expect(res.Frames).To(BeNumerically(">", 0))
		Expect(obs.kinds()).To(ContainElements(h2attack.Started, h2attack.Connected, h2attack.Stopped))
		Expect(res.Elapsed).To(BeNumerically("<", 10*time.Second), "the time bound held")
		c.verify(res, srv, obs)
		st, err := serving(ctx, srv.addr, cliTLS)
		Expect(err).NotTo(HaveOccurred(), "the server keeps serving after %s", res.Attack)
		Expect(st).To(Equal(healthpb.HealthCheckResponse_SERVING))
	},
	Entry("rapid-reset: grpc-go never runs more handlers than MAX_CONCURRENT_STREAMS", attackCase{
		params: &h2attack.RapidResetParams{Connections: 1, Streams: 3000, Duration: short, Rate: 0},
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(res.Streams).To(BeNumerically(">", 10*testMaxStreams), "far more streams opened than the limit")
			Expect(srv.peak.Load()).To(BeNumerically("<=", testMaxStreams))
			Expect(srv.peak.Load()).To(BeNumerically(">=", 1))
		}}, SpecTimeout(30*time.Second)),
	Entry("continuation-flood: the connection is closed at the header list limit", attackCase{
		params: &h2attack.ContinuationFloodParams{Connections: 2, Frames: 5000, FrameBytes: 1024, Duration: short, Rate: 2000},
		verify: func(res h2attack.Result, _ *testServer, obs *observed) {
			Expect(res.Closed).To(HaveLen(2))
			// Paced, the frames written before the close are about those read.
			Expect(res.FirstClose.Frames).To(BeNumerically("<", 100), "closed within ~16 KiB of headers, not after 5000 KiB")
			Expect(res.Stopped).To(Equal("the server closed the connection"))
			Expect(res.Reconnects).To(BeZero(), "reconnect is off")
			Expect(obs.find(h2attack.Closed)).NotTo(BeNil())
		}}, SpecTimeout(30*time.Second)),
	Entry("continuation-flood, reconnecting: every new connection is closed too", attackCase{
		params: &h2attack.ContinuationFloodParams{Connections: 1, Reconnect: true, Frames: 5000, FrameBytes: 1024, Duration: short, Rate: 2000},
		verify: func(res h2attack.Result, _ *testServer, obs *observed) {
			Expect(res.Reconnects).To(BeNumerically(">=", 3))
			Expect(res.Connections).To(Equal(res.Reconnects + 1))
			Expect(res.ClosedCount).To(BeNumerically(">=", res.Connections-1), "each connection was closed by the server (the last perhaps by the time bound)")
			Expect(res.Summary()).To(MatchRegexp(`on \d+ connection\(s\) \(\d+ reconnects\)`))
		}}, SpecTimeout(30*time.Second)),
	Entry("ping-flood: GOAWAY ENHANCE_YOUR_CALM too_many_pings", attackCase{
		params: &h2attack.PingFloodParams{Connections: 1, Pings: 2000, Duration: short, Rate: 2000},
		verify: func(res h2attack.Result, _ *testServer, obs *observed) {
			Expect(res.GoAways).NotTo(BeEmpty())
			Expect(res.GoAways[0].Code).To(Equal(http2.ErrCodeEnhanceYourCalm))
			Expect(res.GoAways[0].Debug).To(Equal("too_many_pings"))
			Expect(res.GoAways[0].Frames).To(BeNumerically("<", 100))
			g := obs.find(h2attack.GoAway)
			Expect(g).NotTo(BeNil())
			Expect(g.Detail).To(ContainSubstring(`ENHANCE_YOUR_CALM "too_many_pings"`))
		}}, SpecTimeout(30*time.Second)),
	Entry("ping-flood over TLS (ALPN h2): the same GOAWAY", attackCase{
		params: &h2attack.PingFloodParams{Connections: 1, Pings: 200, Duration: short, Rate: 1000},
		tls:    true,
		verify: func(res h2attack.Result, _ *testServer, _ *observed) {
			Expect(res.GoAwayCode(http2.ErrCodeEnhanceYourCalm)).To(BeTrue(), res.Summary())
		}}, SpecTimeout(30*time.Second)),
	Entry("settings-flood: every SETTINGS is acknowledged, the connection stays", attackCase{
		params: &h2attack.SettingsFloodParams{Connections: 1, Settings: 1000, Duration: short, Rate: 2000},
		verify: func(res h2attack.Result, _ *testServer, _ *observed) {
			Expect(res.Frames).To(BeNumerically("==", 1000))
			// Our initial SETTINGS is acknowledged too.
			Expect(res.SettingsAcks).To(BeNumerically("==", 1001))
			Expect(res.Closed).To(BeEmpty())
			Expect(res.Stopped).To(Equal("count reached"))
		}}, SpecTimeout(30*time.Second)),
	Entry("empty-frames (data): absorbed, the stream's handler stays the only one", attackCase{
		params: &h2attack.EmptyFramesParams{Connections: 1, Frames: 5000, Kind: "data", Duration: short, Rate: 0},
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(res.Frames).To(BeNumerically("==", 5001)) // the request's HEADERS + 5000 empty DATA
			Expect(srv.handled.Load()).To(BeNumerically("==", 1))
			Expect(res.Closed).To(BeEmpty())
		}}, SpecTimeout(30*time.Second)),
	Entry("empty-frames (headers): each empty request is refused", attackCase{
		params: &h2attack.EmptyFramesParams{Connections: 1, Frames: 200, Kind: "headers", Duration: short, Rate: 1000},
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(srv.handled.Load()).To(BeZero(), "no handler ran for a request without headers")
			Expect(res.Resets["PROTOCOL_ERROR"]+sum(res.StatusEnds)).To(BeNumerically(">=", 1), res.Summary())
		}}, SpecTimeout(30*time.Second)),
	Entry("window-update-flood: absorbed", attackCase{
		params: &h2attack.WindowUpdateFloodParams{Connections: 1, Frames: 5000, Duration: short, Rate: 0},
		verify: func(res h2attack.Result, _ *testServer, _ *observed) {
			Expect(res.Frames).To(BeNumerically("==", 5001))
			Expect(res.Closed).To(BeEmpty())
		}}, SpecTimeout(30*time.Second)),
	Entry("zero-window: a handler writing 8 MiB per stream gets no further than flow control allows", attackCase{
		params:    &h2attack.ZeroWindowParams{Connections: 1, Streams: 5, Duration: short, Rate: 0},
		sendBytes: 8 << 20,
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(res.Streams).To(BeNumerically("==", 5))
			Expect(srv.handled.Load()).To(BeNumerically("==", 5))
			// grpc-go's write quota: 64 KiB per stream beyond what the
			// window lets out (none).
			Expect(srv.sent.Load()).To(BeNumerically("<=", 5*(128<<10)))
		}}, SpecTimeout(30*time.Second)),
	Entry("stream-hold: streams beyond MAX_CONCURRENT_STREAMS are refused", attackCase{
		params: &h2attack.StreamHoldParams{Connections: 2, Streams: testMaxStreams + 5, Exceed: true, Duration: short, Rate: 0},
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(res.ServerMaxStreams).To(BeNumerically("==", testMaxStreams))
			Expect(res.Resets).To(HaveKeyWithValue("REFUSED_STREAM", BeNumerically("==", 10)))
			Expect(srv.peak.Load()).To(BeNumerically("==", 2*testMaxStreams))
		}}, SpecTimeout(30*time.Second)),
	Entry("stream-hold: by default, exactly the announced limit", attackCase{
		params: &h2attack.StreamHoldParams{Connections: 1, Duration: short, Rate: 0},
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(res.Streams).To(BeNumerically("==", testMaxStreams))
			Expect(res.Resets).To(BeEmpty())
		}}, SpecTimeout(30*time.Second)),
	Entry("hpack-bomb: every bomb stream is refused at the header list limit", attackCase{
		params: &h2attack.HpackBombParams{Connections: 1, Streams: 20, Refs: 4000, Duration: short, Rate: 0},
		verify: func(res h2attack.Result, srv *testServer, _ *observed) {
			Expect(res.Streams).To(BeNumerically("==", 20))
			Expect(res.Resets).To(HaveKeyWithValue("FRAME_SIZE_ERROR", BeNumerically("==", 19)))
			Expect(srv.handled.Load()).To(BeNumerically("==", 1), "only the stream that carried the bomb's definition")
		}}, SpecTimeout(30*time.Second)),
)

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

var _ = Describe("bounds", func() {
	It("stops at the count, unpaced", func(ctx SpecContext) {
		srv := startServer(0, nil)
		p := &h2attack.RapidResetParams{Connections: 3, Streams: 50, Duration: 5 * time.Second}
		res, err := p.Run(ctx, h2attack.Target{Addr: srv.addr}, h2attack.Request{Path: attackPath}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Stopped).To(Equal("count reached"))
		Expect(res.Streams).To(BeNumerically("==", 150))
		Expect(res.Frames).To(BeNumerically("==", 300))
	}, SpecTimeout(30*time.Second))

	It("stops at the duration, and at the caller's context", func(ctx SpecContext) {
		srv := startServer(0, nil)
		p := &h2attack.WindowUpdateFloodParams{Connections: 1, Frames: 1_000_000, Duration: 300 * time.Millisecond, Rate: 100}
		res, err := p.Run(ctx, h2attack.Target{Addr: srv.addr}, h2attack.Request{Path: attackPath}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Stopped).To(Equal("duration reached"))
		Expect(res.Frames).To(BeNumerically("<", 1000))

		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(200*time.Millisecond, cancel)
		res, err = p.Run(cctx, h2attack.Target{Addr: srv.addr}, h2attack.Request{Path: attackPath}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.Stopped).To(Equal("stopped"))
	}, SpecTimeout(30*time.Second))

	It("rejects parameters out of range, naming them", func() {
		for _, c := range []struct {
			p    h2attack.Params
			want string
		}{
			{&h2attack.RapidResetParams{Connections: 0, Streams: 1, Duration: time.Second}, "rapid-reset: connections must be within [1, 64], got 0"},
			{&h2attack.PingFloodParams{Connections: 1, Pings: 0, Duration: time.Second}, "ping-flood: pings must be within"},
			{&h2attack.SettingsFloodParams{Connections: 1, Settings: 1, Duration: time.Hour}, "settings-flood: duration must be within (0, 10m0s], got 1h0m0s"},
			{&h2attack.EmptyFramesParams{Connections: 1, Frames: 1, Kind: "rst", Duration: time.Second}, `empty-frames: kind must be "data" or "headers", got "rst"`},
			{&h2attack.HpackBombParams{Connections: 1, Streams: 1, Refs: 0, Duration: time.Second}, "hpack-bomb: refs must be within"},
			{&h2attack.StreamHoldParams{Connections: 100, Duration: time.Second}, "stream-hold: connections must be within [1, 64], got 100"},
		} {
			Expect(c.p.Validate()).To(MatchError(ContainSubstring(c.want)))
			_, err := c.p.Run(context.Background(), h2attack.Target{Addr: "127.0.0.1:1"}, h2attack.Request{}, nil)
			Expect(err).To(MatchError(ContainSubstring(c.want)), "Run validates before dialing")
		}
	})

	It("has defaults that validate, for every registered attack", func() {
		Expect(h2attack.Names()).To(ConsistOf("rapid-reset", "continuation-flood", "ping-flood", "settings-flood",
			"empty-frames", "window-update-flood", "zero-window", "stream-hold", "hpack-bomb"))
		for _, n := range h2attack.Names() {
			Expect(h2attack.Attacks[n].Params().Validate()).To(Succeed(), n)
		}
	})
})

var _ = Describe("targets", func() {
	It("refuses a target that is not loopback, before any connection", func(ctx SpecContext) {
		for _, addr := range []string{"10.0.0.1:443", "[2001:db8::1]:80", "192.0.2.7:7070"} {
			p := h2attack.DefaultPingFlood()
			_, err := p.Run(ctx, h2attack.Target{Addr: addr}, h2attack.Request{}, nil)
			Expect(errors.Is(err, h2attack.ErrRemoteTarget)).To(BeTrue(), "%s: %v", addr, err)
			Expect(err).To(MatchError(ContainSubstring("--allow-remote-attacks")))
		}
	}, SpecTimeout(10*time.Second))

	It("takes 127.0.0.0/8, ::1 and localhost; AllowRemote lifts the refusal", func(ctx SpecContext) {
		for addr, want := range map[string]string{"127.0.0.1:80": "127.0.0.1:80", "127.3.2.1:80": "127.3.2.1:80", "[::1]:80": "[::1]:80"} {
			got, err := h2attack.Resolve(ctx, h2attack.Target{Addr: addr})
			Expect(err).NotTo(HaveOccurred())
			Expect(got).To(Equal(want))
		}
		got, err := h2attack.Resolve(ctx, h2attack.Target{Addr: "localhost:80"})
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Or(Equal("127.0.0.1:80"), Equal("[::1]:80")))
		got, err = h2attack.Resolve(ctx, h2attack.Target{Addr: "10.0.0.1:443", AllowRemote: true})
		Expect(err).NotTo(HaveOccurred())
		Expect(got).To(Equal("10.0.0.1:443"))
		_, err = h2attack.Resolve(ctx, h2attack.Target{Addr: "127.0.0.1"})
		Expect(err).To(MatchError(ContainSubstring(`target "127.0.0.1"`)))
	}, SpecTimeout(10*time.Second))

	It("fails naming the target when nothing listens", func(ctx SpecContext) {
		p := h2attack.DefaultPingFlood()
		p.Duration = time.Second
		_, err := p.Run(ctx, h2attack.Target{Addr: "127.0.0.1:1"}, h2attack.Request{}, nil)
		Expect(err).To(MatchError(ContainSubstring("127.0.0.1:1")))
	}, SpecTimeout(10*time.Second))
})
