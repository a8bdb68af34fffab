package check_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/check"
	ev "github.com/bidikit/bidikit/harness/event"
)

// healthyEnv is a target that answers health checks SERVING and exposes
// nothing else.
type healthyEnv struct{}

func (healthyEnv) AdminURL() string { return "" }
func (healthyEnv) Channelz(context.Context) (int, int, bool, error) {
	return 0, 0, false, nil
}
func (healthyEnv) Healthy(context.Context) (bool, error) { return true, nil }

var healthy check.Env = healthyEnv{}

// verdicts runs every named checker over evs and returns status by name.
func verdicts(evs []ev.Event, names ...string) map[string]check.Verdict {
	out := map[string]check.Verdict{}
	for _, n := range names {
		out[n] = run(n, noDecode, healthy, evs)
	}
	return out
}

var chatChecks = []string{"total-order", "delivery-order", "no-gaps", "no-duplicates", "no-lost-acks", "sender-fifo"}

// expectOnly asserts that exactly the checks in failing fail and every
// other of chatChecks passes.
func expectOnly(vs map[string]check.Verdict, failing ...string) {
	GinkgoHelper()
	want := map[string]bool{}
	for _, f := range failing {
		want[f] = true
	}
	for n, v := range vs {
		if want[n] {
			Expect(v.Status).To(Equal(check.Fail), "%s should fail: %s", n, v.Summary)
		} else {
			Expect(v.Status).To(Equal(check.Pass), "%s should pass: %s %+v", n, v.Summary, v.Evidence)
		}
	}
}

var _ = Describe("verdicts blame only what they prove", func() {
	It("a reordered delivery fails delivery-order only, naming the member, both seqs and times", func() {
		c := clean()
		// bob receives seq 3 before seq 2: swap his last two deliveries.
		n := len(c.evs)
		c.evs[n-1], c.evs[n-2] = c.evs[n-2], c.evs[n-1]
		c.evs[n-1].At, c.evs[n-2].At = c.evs[n-2].At, c.evs[n-1].At
		vs := verdicts(c.evs, chatChecks...)
		expectOnly(vs, "delivery-order")
		e := vs["delivery-order"].Evidence[0]
		Expect(e.Seq).To(Equal(uint64(2)))
		Expect(e.Detail).To(MatchRegexp(`#1 bob \(\) received seq 2 at \d+s after seq 3 at \d+s`))
	})

	It("a seq received twice fails no-duplicates, not delivery-order", func() {
		c := clean()
		c.deliver(1, 2, 1, "b1", 1)
		expectOnly(verdicts(c.evs, chatChecks...), "no-duplicates")
	})

	It("a second Ack frame for one message fails no-duplicates", func() {
		c := clean()
		c.ack(0, "a1", 1, 1)
		vs := verdicts(c.evs, chatChecks...)
		expectOnly(vs, "no-duplicates")
		Expect(vs["no-duplicates"].Evidence[0].Detail).To(ContainSubstring("second Ack for a1"))
	})

	It("a member that silently stops receiving fails no-lost-acks only (an end-of-stream loss shows no jump)", func() {
		c := &chat{}
		c.join(0, 0).join(1, 0)
		for i := uint64(1); i <= 6; i++ {
			id := "a" + string(rune('0'+i))
			c.send(0, id, i).ack(0, id, i, i).deliver(0, i, 0, id, i)
			if i <= 2 {
				c.deliver(1, i, 0, id, i)
			}
		}
		c.send(0, "a7", 7) // quiet tail longer than the grace
		c.send(0, "a8", 8)
		c.send(0, "a9", 9)
		vs := verdicts(c.evs, chatChecks...)
		expectOnly(vs, "no-lost-acks")
		Expect(vs["no-lost-acks"].Violations).To(Equal(4))
		Expect(vs["no-lost-acks"].Evidence[0].Detail).To(ContainSubstring("acked at seq 3"))
	})

	It("a member that receives nothing at all is judged too", func() {
		c := &chat{}
		c.join(0, 0).join(1, 0)
		c.send(0, "a1", 1).ack(0, "a1", 1, 1).deliver(0, 1, 0, "a1", 1)
		c.send(0, "a2", 2).send(0, "a3", 3).send(0, "a4", 4)
		v := run("no-lost-acks", noDecode, healthy, c.evs)
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Client).To(ContainSubstring("bob"))
	})

	It("a late arrival is not a loss: order does not matter to no-lost-acks and no-gaps", func() {
		c := clean()
		n := len(c.evs)
		c.evs[n-1], c.evs[n-3] = c.evs[n-3], c.evs[n-1] // bob gets 3, 2, 1
		vs := verdicts(c.evs, "no-lost-acks", "no-gaps", "no-duplicates")
		expectOnly(vs)
	})

	It("a member the server cut with its own status is held only to what it received before", func() {
		c := clean()
		c.evs = c.evs[:len(c.evs)-1]
		c.disconnect(1, codes.ResourceExhausted)
		c.send(0, "x", 9).send(0, "y", 10).send(0, "z", 11)
		Expect(run("no-lost-acks", noDecode, healthy, c.evs).Status).To(Equal(check.Pass))
	})

	It("a member whose stream a fault broke is still held to what was acked long before the break", func() {
		c := clean()
		c.evs = c.evs[:len(c.evs)-1] // bob never gets seq 3, acked at 7s
		for range 4 {
			c.send(0, "pad", 99)
		}
		c.evs = append(c.evs, ev.Event{Kind: ev.Fault, At: c.at(), Client: 1, Detail: "abrupt-close"})
		c.disconnect(1, codes.Unavailable)
		Expect(run("no-lost-acks", noDecode, healthy, c.evs).Status).To(Equal(check.Fail))
	})

	It("delivery-order and no-gaps are not measurable without deliveries", func() {
		c := &chat{}
		c.join(0, 0)
		for _, n := range []string{"delivery-order", "no-gaps", "no-duplicates"} {
			Expect(run(n, noDecode, healthy, c.evs).Status).To(Equal(check.NotMeasurable), n)
		}
	})
})

var _ = Describe("status-codes judges by the service's contract", func() {
	chatCodes := func(evs []ev.Event) check.Verdict {
		c, err := check.New("status-codes", noDecode)
		Expect(err).NotTo(HaveOccurred())
		c.(check.ServiceAware).SetService("chat")
		for i := range evs {
			c.Observe(&evs[i])
		}
		return c.Verdict(context.Background(), healthy)
	}
	It("passes clean ends and documented codes, saying what it saw", func() {
		v := chatCodes([]ev.Event{
			{Kind: ev.Disconnect, Client: 1, Code: codes.OK, Latency: 3 * time.Millisecond},
			{Kind: ev.Error, Client: 1, Code: codes.ResourceExhausted},
			{Kind: ev.Disconnect, Client: 2, Code: codes.ResourceExhausted},
		})
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("3 stream ends"[:1]))
		Expect(v.Summary).To(ContainSubstring("1 streams closed by the server after CloseSend"))
	})
	It("fails a code the contract does not document, and UNAUTHENTICATED no role expects", func() {
		v := chatCodes([]ev.Event{
			{Kind: ev.Disconnect, Client: 1, Code: codes.Aborted, Detail: "x"},
			{Kind: ev.Disconnect, Client: 2, Code: codes.Unauthenticated, Detail: "bad token"},
		})
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Violations).To(Equal(2))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("ABORTED as the stream's status, which the chat contract does not document"))
	})
	It("does not blame the server for a stream the harness broke", func() {
		v := chatCodes([]ev.Event{
			{Kind: ev.Fault, Client: 1, Detail: "abrupt-close"},
			{Kind: ev.Disconnect, Client: 1, Code: codes.Internal},
			{Kind: ev.Disconnect, Client: 2, Code: codes.Unavailable, Field: ev.FieldClientEnd},
		})
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
	})
	It("fails streams the server did not end after CloseSend, counting them", func() {
		v := chatCodes([]ev.Event{
			{Kind: ev.Disconnect, Client: 1, Code: codes.OK, Latency: time.Millisecond},
			{Kind: ev.Disconnect, Client: 2, Code: codes.DeadlineExceeded, Field: ev.FieldCloseGrace, Detail: "server did not end the stream"},
			{Kind: ev.Disconnect, Client: 3, Code: codes.DeadlineExceeded, Field: ev.FieldCloseGrace, Detail: "server did not end the stream"},
		})
		Expect(v.Status).To(Equal(check.Fail))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("2 of 3 stream ends: the server did not end the stream within the grace"))
	})
	It("does not blame the server for stream ends the harness itself may have read late", func() {
		unclosed := func(dispatchLag time.Duration) []ev.Event {
			evs := []ev.Event{
				{Kind: ev.Disconnect, Client: 1, Code: codes.OK, At: 9 * time.Second, Latency: time.Millisecond},
				{Kind: ev.HarnessLag, Client: -1, At: 7 * time.Second, Field: ev.LagScheduler, Latency: 20 * time.Millisecond},
				{Kind: ev.HarnessLag, Client: -1, At: 7 * time.Second, Field: ev.LagDispatch, Latency: dispatchLag},
			}
			for c := 2; c <= 3; c++ {
				evs = append(evs, ev.Event{Kind: ev.Disconnect, Client: c, At: 10 * time.Second, Latency: 5 * time.Second,
					Code: codes.DeadlineExceeded, Field: ev.FieldCloseGrace, Detail: "server did not end the stream"})
			}
			return evs
		}
		// The dispatcher held a client's events for 1.2s within the grace:
		// its receive loop was not reading.
		v := chatCodes(unclosed(1200 * time.Millisecond))
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("2 of 3 stream ends came after the grace"))
		Expect(v.Summary).To(ContainSubstring("harness lag up to 1.22s"))
		// A harness that kept up: the server is to blame.
		v = chatCodes(unclosed(10 * time.Millisecond))
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("2 of 3 stream ends: the server did not end the stream within the grace"))
		Expect(v.Evidence[0].Detail).To(ContainSubstring("harness lag up to 30ms"))
	})
	It("does not blame the server for a late end of a stream a fault disturbed (a paused reader, a slowed connection)", func() {
		late := ev.Event{Kind: ev.Disconnect, Client: 2, Code: codes.DeadlineExceeded, Field: ev.FieldCloseGrace, Detail: "server did not end the stream"}
		clean := ev.Event{Kind: ev.Disconnect, Client: 1, Code: codes.OK, Latency: time.Millisecond}
		for _, f := range []ev.Event{{Kind: ev.Fault, Client: 2, Detail: "pause"}, {Kind: ev.Fault, Client: -1, Detail: "latency"}} {
			v := chatCodes([]ev.Event{f, clean, late})
			Expect(v.Status).To(Equal(check.Pass), "%s: %s", f.Detail, v.Summary)
			Expect(v.Summary).To(ContainSubstring("1 stream end(s) after the grace not judged"))
		}
		// A run-wide kill is no excuse for a stream left open later.
		v := chatCodes([]ev.Event{{Kind: ev.Fault, Client: -1, Detail: "kill-server"}, clean, late})
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
	})
	It("is not measurable when the server's health could not be asked: the verdict's time ran out, or the run killed every target", func() {
		c, err := check.New("status-codes", noDecode)
		Expect(err).NotTo(HaveOccurred())
		c.Observe(&ev.Event{Kind: ev.Disconnect, Client: 1, Code: codes.OK, Latency: time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		v := c.Verdict(ctx, deadlineEnv{})
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("the server's health was not asked in time"))

		c, err = check.New("status-codes", noDecode)
		Expect(err).NotTo(HaveOccurred())
		c.Observe(&ev.Event{Kind: ev.Fault, Client: -1, Detail: "kill-server"})
		c.Observe(&ev.Event{Kind: ev.Disconnect, Client: 1, Code: codes.OK, Latency: time.Millisecond})
		v = c.Verdict(context.Background(), killedEnv{})
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("no target left to ask"))
	})
	It("does not blame a down target when expect_down names targets the env cannot tell apart (a merged report)", func() {
		expectDown := func(into any) error {
			into.(*check.StatusParams).ExpectDown = []int{2}
			return nil
		}
		end := []ev.Event{{Kind: ev.Disconnect, Client: 1, Code: codes.OK, Latency: time.Millisecond}}
		v := run("status-codes", expectDown, downEnv{}, end)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("expect_down cannot be honoured here"))
		// Without expect_down, a target that no longer answers is the server's failure.
		Expect(run("status-codes", noDecode, downEnv{}, end).Status).To(Equal(check.Fail))
	})
	It("is not measurable when no stream ended", func() {
		Expect(chatCodes(nil).Status).To(Equal(check.NotMeasurable))
	})
})

// deadlineEnv answers health with its context's error.
type deadlineEnv struct{ healthyEnv }

func (deadlineEnv) Healthy(ctx context.Context) (bool, error) { return false, ctx.Err() }

// killedEnv is one target the run killed.
type killedEnv struct{ healthyEnv }

func (killedEnv) Healthy(context.Context) (bool, error) {
	return false, errors.New("no target left to ask: the run killed 127.0.0.1:1")
}
func (killedEnv) TargetsHealth(context.Context) []check.TargetHealth {
	return []check.TargetHealth{{Position: 1, Target: "127.0.0.1:1", Killed: true}}
}

var _ = Describe("fairness judges what the server did to honest traffic", func() {
	params := func(into any) error {
		p := into.(*check.FairnessParams)
		p.Honest, p.Attackers, p.MinCalmSamples = "honest", "flooder", 1
		return nil
	}
	It("fails starvation: honest clients sent under attack and got no ack", func() {
		evs := []ev.Event{
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 10 * time.Millisecond},
			{Kind: ev.Ack, Client: 0, User: "h0", Role: "honest", At: 20 * time.Millisecond, Latency: time.Millisecond},
			{Kind: ev.Send, Client: 9, User: "f", Role: "flooder", At: time.Second},
			{Kind: ev.Error, Client: 9, User: "f", Role: "flooder", At: time.Second, Code: codes.ResourceExhausted},
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second},
			{Kind: ev.Send, Client: 1, User: "h1", Role: "honest", At: 2 * time.Second},
		}
		v := run("fairness", params, healthy, evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("starved"))
	})
	It("blames a server's Error to an honest client even after a fault on its stream, but not a stream end the fault may have caused", func() {
		base := []ev.Event{
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 10 * time.Millisecond},
			{Kind: ev.Ack, Client: 0, User: "h0", Role: "honest", At: 20 * time.Millisecond, Latency: time.Millisecond},
			{Kind: ev.Fault, Client: 0, Detail: "pause", At: 500 * time.Millisecond},
			{Kind: ev.Send, Client: 9, User: "f", Role: "flooder", At: time.Second},
			{Kind: ev.Error, Client: 9, User: "f", Role: "flooder", At: time.Second, Code: codes.ResourceExhausted},
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second},
			{Kind: ev.Ack, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second, Latency: time.Millisecond},
		}
		withEnd := func(e ev.Event) []ev.Event { return append(append([]ev.Event(nil), base...), e) }
		v := run("fairness", params, healthy, withEnd(ev.Event{Kind: ev.Error, Client: 0, User: "h0", Role: "honest", At: 3 * time.Second, Code: codes.Internal, Detail: "boom"}))
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
		Expect(v.Evidence[0].Detail).To(ContainSubstring("got INTERNAL: boom"))
		v = run("fairness", params, healthy, withEnd(ev.Event{Kind: ev.Disconnect, Client: 0, User: "h0", Role: "honest", At: 3 * time.Second, Code: codes.Unavailable}))
		Expect(v.Status).To(Equal(check.Pass), "%s %v", v.Summary, v.Evidence)
		// A new stream carries no fault: its end is the server's again.
		evs := withEnd(ev.Event{Kind: ev.Connect, Client: 0, User: "h0", Role: "honest", At: 2500 * time.Millisecond})
		evs = append(evs, ev.Event{Kind: ev.Disconnect, Client: 0, User: "h0", Role: "honest", At: 3 * time.Second, Code: codes.Internal})
		v = run("fairness", params, healthy, evs)
		Expect(v.Status).To(Equal(check.Fail), v.Summary)
	})
	It("is not measurable, not a fail, when the attackers' only answers were error messages without a status code", func() {
		evs := []ev.Event{
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 10 * time.Millisecond},
			{Kind: ev.Ack, Client: 0, User: "h0", Role: "honest", At: 20 * time.Millisecond, Latency: time.Millisecond},
			{Kind: ev.Send, Client: 9, User: "f", Role: "flooder", At: time.Second},
			{Kind: ev.Error, Client: 9, User: "f", Role: "flooder", At: time.Second, Field: ev.FieldNoCode, Detail: "slow down"},
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second},
			{Kind: ev.Ack, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second, Latency: time.Millisecond},
		}
		v := run("fairness", params, healthy, evs)
		Expect(v.Status).To(Equal(check.NotMeasurable), v.Summary)
		Expect(v.Summary).To(ContainSubstring("they got 1 error message(s) without a status code"))
		// status-codes says it did not judge it.
		v = run("status-codes", noDecode, healthy, append(evs, ev.Event{Kind: ev.Disconnect, Client: 0, Code: codes.OK, Latency: time.Millisecond}))
		Expect(v.Status).To(Equal(check.Pass), v.Summary)
		Expect(v.Summary).To(ContainSubstring("1 server error message(s) carried no status code"))
	})
	It("is not measurable, not a pass, when the calm phase gave no latency to compare", func() {
		evs := []ev.Event{
			{Kind: ev.Send, Client: 9, User: "f", Role: "flooder", At: time.Second},
			{Kind: ev.Error, Client: 9, User: "f", Role: "flooder", At: time.Second, Code: codes.ResourceExhausted},
			{Kind: ev.Send, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second},
			{Kind: ev.Ack, Client: 0, User: "h0", Role: "honest", At: 2 * time.Second, Latency: time.Millisecond},
		}
		v := run("fairness", params, healthy, evs)
		Expect(v.Status).To(Equal(check.NotMeasurable))
		Expect(v.Summary).To(ContainSubstring("send-to-ack p99 ratio (0 calm samples"))
	})
})

var _ = Describe("evidence of several kinds", func() {
	It("keeps the first violation of every kind once the evidence is full", func() {
		var v check.Verdict
		for i := range 50 {
			v.AddKind("step too long", check.Evidence{Detail: fmt.Sprintf("step %d", i)})
		}
		v.AddKind("outside the map", check.Evidence{Detail: "outside"})
		v.AddKind("outside the map", check.Evidence{Detail: "outside again"})
		v.AddKind("tick anomaly", check.Evidence{Detail: "tick"})
		Expect(v.Violations).To(Equal(53))
		Expect(v.Evidence).To(HaveLen(check.MaxEvidence))
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", "outside")))
		Expect(v.Evidence).To(ContainElement(HaveField("Detail", "tick")))
		Expect(v.Evidence).NotTo(ContainElement(HaveField("Detail", "outside again")))
		Expect(v.Evidence[0].Detail).To(Equal("step 0"))
	})
})

// downEnv is a target list the env cannot tell apart, one of them down.
type downEnv struct{ healthyEnv }

func (downEnv) Healthy(context.Context) (bool, error) {
	return false, errors.New("target 2: connection refused")
}
