package custom_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	_ "github.com/bidikit/bidikit/harness/engine/custom"

	"github.com/bidikit/bidikit/harness/engine"
	"github.com/bidikit/bidikit/harness/event"
	"github.com/bidikit/bidikit/harness/result"
	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/reference"
)

func TestCustom(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "custom")
}

// chatProtocol is the protocol block of harness/protocol/testdata/chat.yaml
// (bidikit.chat.v1 described as a custom server would be), with
// descriptors, when given, as one more line of the block (e.g.
// "descriptors: {protoset: chat.protoset}").
func chatProtocol(descriptors string) string {
	data, err := os.ReadFile(filepath.Join("..", "..", "protocol", "testdata", "chat.yaml"))
	Expect(err).NotTo(HaveOccurred(), "the cross-validation fixture harness/protocol/testdata/chat.yaml")
	text := string(data)
	i := strings.Index(text, "\nprotocol:\n")
	Expect(i).To(BeNumerically(">=", 0), "chat.yaml has no top-level protocol: block")
	block := text[i+1:]
	if descriptors != "" {
		const method = "  method: bidikit.chat.v1.ChatService/Connect\n"
		Expect(block).To(ContainSubstring(method))
		block = strings.Replace(block, method, method+"  "+descriptors+"\n", 1)
	}
	return block
}

// parseIn writes yaml as dir/name and parses it (relative paths in it are
// relative to dir); a bad scenario fails the spec with its errors.
func parseIn(dir, name, yaml string) *scenario.Scenario {
	path := filepath.Join(dir, name)
	Expect(os.WriteFile(path, []byte(yaml), 0o644)).To(Succeed())
	s, err := scenario.Parse(path, []byte(yaml))
	Expect(err).NotTo(HaveOccurred(), "scenario %s:\n%s", name, yaml)
	return s
}

// counts counts a run's events by kind (engine.Tap). Events comes from the
// engine's dispatcher goroutine only; read the counts after Run returns.
type counts map[event.Kind]int

func (c counts) Begin(time.Time) {}
func (c counts) Events(b []event.Event) {
	for i := range b {
		c[b[i].Kind]++
	}
}
func (c counts) End(engine.Final) {}

// String names the kinds, for failure messages.
func (c counts) String() string {
	names := map[event.Kind]string{event.Connect: "connect", event.Disconnect: "disconnect", event.Join: "join", event.Leave: "leave",
		event.Send: "send", event.Ack: "ack", event.Deliver: "deliver", event.Error: "error", event.Fault: "fault", event.Phase: "phase"}
	var b strings.Builder
	for k := event.Kind(1); k < 32; k++ {
		if c[k] > 0 {
			fmt.Fprintf(&b, "%s=%d ", names[k], c[k])
		}
	}
	return b.String()
}

// run drives s through the engine against addr (admin: the admin base URL
// for the leaks check, "" for none) and counts its events.
func run(ctx context.Context, s *scenario.Scenario, addr, admin string, opts ...engine.Option) (result.Scenario, counts) {
	c := counts{}
	opts = append([]engine.Option{engine.WithTarget(addr), engine.WithServerEnv(admin), engine.WithTap(c),
		engine.WithLogger(slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelWarn})))}, opts...)
	t0 := time.Now()
	res, err := engine.Run(ctx, s, opts...)
	Expect(err).NotTo(HaveOccurred(), "running %s against %s: %s", s.Name, addr, describe(res))
	GinkgoWriter.Printf("ran %s against %s in %s: %s\n%s", s.Name, addr, time.Since(t0).Round(time.Millisecond), c, describe(res))
	return res, c
}

// startReference starts the in-process reference server (development
// auth, memory storage, reflection, admin HTTP); it stops at the spec's
// cleanup.
func startReference() (addr, admin string) {
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := reference.StartDefault(ctx, slog.New(slog.NewTextHandler(GinkgoWriter, &slog.HandlerOptions{Level: slog.LevelError})))
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		cancel()
		_ = srv.Wait()
	})
	return srv.Addr(), "http://" + srv.AdminAddr()
}

// describe renders a result's verdicts for failure messages.
func describe(res result.Scenario) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: failure=%q messages=%+v errors=%v\n", res.Name, res.Failure, res.Messages, res.Errors)
	for _, v := range res.Checks {
		fmt.Fprintf(&b, "  %-20s %-14s %3d  %s\n", v.Name, v.Status, v.Violations, v.Summary)
		for i, e := range v.Evidence {
			if i == 2 {
				fmt.Fprintf(&b, "      ... %d more\n", len(v.Evidence)-i)
				break
			}
			fmt.Fprintf(&b, "      %s\n", e.Detail)
		}
	}
	return b.String()
}

// statuses maps each check of res to its status and violation count.
func statuses(res result.Scenario) map[string]string {
	out := map[string]string{}
	for _, v := range res.Checks {
		out[v.Name] = fmt.Sprintf("%s (%d violations)", v.Status, v.Violations)
	}
	return out
}
