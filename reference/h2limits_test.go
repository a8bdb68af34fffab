package reference_test

import (
	"errors"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gleak"
	"golang.org/x/net/http2"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/bidikit/bidikit/harness/h2attack"
	chatv1 "github.com/bidikit/bidikit/proto/bidikit/chat/v1"
	"github.com/bidikit/bidikit/reference"
	"github.com/bidikit/bidikit/reference/auth"
	"github.com/bidikit/bidikit/reference/validate"
)

var _ = Describe("the HTTP/2 flood guard (H2Limits)", func() {
	BeforeEach(func() {
		baseline := gleak.Goroutines()
		DeferCleanup(func() {
			Eventually(gleak.Goroutines).WithTimeout(15 * time.Second).ShouldNot(gleak.HaveLeaked(baseline))
		})
	})

	// small limits, so that each attack crosses one within a second.
	small := reference.H2Limits{ControlFrameRate: 100, ControlFrameBurst: 200, ResetRate: 50, ResetBurst: 100,
		MaxEmptyFrames: 8, FloodPenalty: 300 * time.Millisecond}

	DescribeTable("answers a flood with GOAWAY ENHANCE_YOUR_CALM naming the rule, closes the connection after the penalty, and counts it",
		func(ctx SpecContext, p h2attack.Params, rule string) {
			srv, _ := start(reference.Options{H2Limits: small}, newFakeChat())
			res, err := p.Run(ctx, h2attack.Target{Addr: srv.Addr()}, h2attack.Request{}, nil)
			Expect(err).NotTo(HaveOccurred())
			GinkgoWriter.Println(res.Summary())
			Expect(res.GoAways).NotTo(BeEmpty(), res.Summary())
			Expect(res.GoAways[0].Code).To(Equal(http2.ErrCodeEnhanceYourCalm))
			Expect(res.GoAways[0].Debug).To(Equal("bidikit: HTTP/2 flood: " + rule))
			Expect(res.ClosedCount).To(Equal(1), "closed once the penalty was over")
			Expect(res.FirstClose.After-res.GoAways[0].After).To(BeNumerically(">=", 250*time.Millisecond), "not read during the penalty")
			Expect(scrape(srv)).To(ContainSubstring(`bidikit_h2_flood_closes_total{rule="` + rule + `"} 1`))
			// Honest clients are served on.
			resp, err := healthpb.NewHealthClient(dial(srv.Addr())).Check(ctx, &healthpb.HealthCheckRequest{})
			Expect(err).NotTo(HaveOccurred())
			Expect(resp.Status).To(Equal(healthpb.HealthCheckResponse_SERVING))
		},
		Entry("window-update-flood: control frames", &h2attack.WindowUpdateFloodParams{Connections: 1, Frames: 2000, Duration: 3 * time.Second, Rate: 2000}, "control-frames", SpecTimeout(30*time.Second)),
		Entry("settings-flood: control frames", &h2attack.SettingsFloodParams{Connections: 1, Settings: 2000, Duration: 3 * time.Second, Rate: 2000}, "control-frames", SpecTimeout(30*time.Second)),
		Entry("rapid-reset: RST_STREAM", &h2attack.RapidResetParams{Connections: 1, Streams: 2000, Duration: 3 * time.Second, Rate: 1000}, "rst-stream", SpecTimeout(30*time.Second)),
		Entry("empty-frames (data)", &h2attack.EmptyFramesParams{Connections: 1, Frames: 100, Kind: "data", Duration: 3 * time.Second, Rate: 500}, "empty-frames", SpecTimeout(30*time.Second)),
		Entry("zero-window: streams opened with SETTINGS_INITIAL_WINDOW_SIZE 0", &h2attack.ZeroWindowParams{Connections: 1, Streams: 3, Duration: 3 * time.Second}, "zero-window", SpecTimeout(30*time.Second)),
		Entry("continuation-flood of empty frames", &h2attack.ContinuationFloodParams{Connections: 1, Frames: 100, FrameBytes: 0, Duration: 3 * time.Second, Rate: 500}, "empty-frames", SpecTimeout(30*time.Second)),
	)

	It("lets a burst within the limits through, and grpc-go's own answers stand", func(ctx SpecContext) {
		srv, _ := start(reference.Options{H2Limits: small}, newFakeChat())
		p := &h2attack.WindowUpdateFloodParams{Connections: 1, Frames: 150, Duration: 2 * time.Second}
		res, err := p.Run(ctx, h2attack.Target{Addr: srv.Addr()}, h2attack.Request{}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.GoAways).To(BeEmpty(), res.Summary())
		Expect(res.ClosedCount).To(BeZero())

		pf := &h2attack.PingFloodParams{Connections: 1, Pings: 50, Duration: 2 * time.Second, Rate: 500}
		res, err = pf.Run(ctx, h2attack.Target{Addr: srv.Addr()}, h2attack.Request{}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.GoAwayCode(http2.ErrCodeEnhanceYourCalm)).To(BeTrue(), res.Summary())
		Expect(res.GoAways[0].Debug).To(Equal("too_many_pings"), "keepalive enforcement answers before the guard")
	}, SpecTimeout(30*time.Second))

	It("lets a busy honest client answer the server's data with window updates and BDP pings beyond the control-frame budget", func(ctx SpecContext) {
		// 20 MB of acks to one stream: grpc-go's client sends a stream and
		// a connection WINDOW_UPDATE per 16 KiB read and BDP pings while
		// data flows, thousands of control frames against a budget of
		// 100/s (burst 200) that a flood of the same frames crosses.
		srv, _ := start(reference.Options{H2Limits: small}, newFakeChat())
		sctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer honest")
		stream, err := chatv1.NewChatServiceClient(dial(srv.Addr())).Connect(sctx)
		Expect(err).NotTo(HaveOccurred())
		id := strings.Repeat("x", 4096)
		const n = 5000
		sent := make(chan error, 1)
		go func() {
			defer GinkgoRecover()
			for i := range n {
				ev := &chatv1.ClientEvent{Event: &chatv1.ClientEvent_Send{Send: &chatv1.Send{Room: "r", ClientMsgId: fmt.Sprint(id, i)}}}
				if err := stream.Send(ev); err != nil {
					sent <- err
					return
				}
			}
			sent <- stream.CloseSend()
		}()
		for i := range n {
			_, err := stream.Recv()
			Expect(err).NotTo(HaveOccurred(), "ack %d of %d", i+1, n)
		}
		Eventually(sent).WithTimeout(10 * time.Second).Should(Receive(BeNil()))
		Expect(scrape(srv)).NotTo(ContainSubstring(`bidikit_h2_flood_closes_total{`))
	}, SpecTimeout(60*time.Second))

	It("is off with Disable: the flood is absorbed one frame at a time", func(ctx SpecContext) {
		srv, _ := start(reference.Options{H2Limits: reference.H2Limits{Disable: true}}, newFakeChat())
		p := &h2attack.EmptyFramesParams{Connections: 1, Frames: 500, Kind: "data", Duration: 2 * time.Second, Rate: 2000}
		res, err := p.Run(ctx, h2attack.Target{Addr: srv.Addr()}, h2attack.Request{}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(res.GoAways).To(BeEmpty(), res.Summary())
		Expect(scrape(srv)).NotTo(ContainSubstring(`bidikit_h2_flood_closes_total{`))
	}, SpecTimeout(30*time.Second))

	It("rejects impossible limits, naming the field (a library names no flags)", func() {
		for _, c := range []struct {
			l    reference.H2Limits
			want string
		}{
			{reference.H2Limits{ControlFrameRate: -1}, "Options.H2Limits.ControlFrameRate is -1, want > 0"},
			{reference.H2Limits{ResetBurst: -2}, "Options.H2Limits.ResetBurst is -2, want >= 1"},
			{reference.H2Limits{MaxEmptyFrames: -1}, "Options.H2Limits.MaxEmptyFrames is -1, want >= 1"},
		} {
			_, err := reference.New(reference.Options{Authenticator: auth.DevMode{}, H2Limits: c.l})
			Expect(err).To(MatchError(ContainSubstring(c.want)))
			Expect(err.Error()).NotTo(ContainSubstring("--"))
			var se *validate.SettingError
			Expect(errors.As(err, &se)).To(BeTrue())
		}
	})
})
