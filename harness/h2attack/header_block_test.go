package h2attack_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/net/http2"

	"github.com/bidikit/bidikit/harness/h2attack"
)

// rawPeer is an HTTP/2 server on 127.0.0.1:0 written with the bare
// Framer: it sends its SETTINGS, then, once the client's HEADERS opened a
// header block, a PING and another SETTINGS, and records the type of
// every frame it reads (in order) until the client closes. It answers
// nothing and never closes first.
type rawPeer struct {
	addr   string
	frames chan []string // what one connection read, when it ended
}

func startRawPeer() *rawPeer {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	p := &rawPeer{addr: lis.Addr().String(), frames: make(chan []string, 1)}
	go func() {
		defer GinkgoRecover()
		nc, err := lis.Accept()
		_ = lis.Close()
		if err != nil {
			return
		}
		defer func() { _ = nc.Close() }()
		_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
		br := bufio.NewReader(nc)
		preface := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(br, preface); err != nil {
			p.frames <- []string{"no preface: " + err.Error()}
			return
		}
		fr := http2.NewFramer(nc, br)
		Expect(fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 16384})).To(Succeed())
		var seen []string
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				p.frames <- seen
				return
			}
			name := f.Header().Type.String()
			if sf, ok := f.(*http2.SettingsFrame); ok && sf.IsAck() {
				name = "SETTINGS-ACK"
			}
			if pf, ok := f.(*http2.PingFrame); ok && pf.IsAck() {
				name = "PING-ACK"
			}
			seen = append(seen, name)
			if hf, ok := f.(*http2.HeadersFrame); ok && !hf.HeadersEnded() {
				// Inside the block: a client may send nothing but its
				// CONTINUATION frames now, not even these acks.
				Expect(fr.WritePing(false, [8]byte{1})).To(Succeed())
				Expect(fr.WriteSettings()).To(Succeed())
			}
		}
	}()
	return p
}

var _ = Describe("continuation-flood's open header block", func() {
	It("acks the server's first SETTINGS before its HEADERS and nothing between its block's frames (RFC 9113 §6.10)", func(ctx SpecContext) {
		peer := startRawPeer()
		p := &h2attack.ContinuationFloodParams{Connections: 1, Frames: 20, FrameBytes: 0, Duration: 3 * time.Second, Rate: 200}
		res, err := p.Run(ctx, h2attack.Target{Addr: peer.addr}, h2attack.Request{}, nil)
		Expect(err).NotTo(HaveOccurred())
		var seen []string
		Eventually(peer.frames).WithTimeout(10 * time.Second).Should(Receive(&seen))
		GinkgoWriter.Println(res.Summary(), seen)
		// The preface's SETTINGS and window grant, the ack of ours, the
		// HEADERS, then its 20 CONTINUATIONs and nothing else.
		Expect(seen).To(HaveLen(4+20), "%v", seen)
		Expect(seen[:4]).To(Equal([]string{"SETTINGS", "WINDOW_UPDATE", "SETTINGS-ACK", "HEADERS"}))
		for i, name := range seen[4:] {
			Expect(name).To(Equal("CONTINUATION"), fmt.Sprintf("frame %d after the HEADERS", i+1))
		}
		Expect(res.HeldAcks).To(BeNumerically("==", 2), "the PING and the SETTINGS sent inside the block were not answered")
		Expect(res.Summary()).To(MatchRegexp(`\(count reached\); 2 of our acks held back inside the open header block; server: `))
	}, SpecTimeout(30*time.Second))
})
