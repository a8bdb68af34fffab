package collab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"google.golang.org/grpc"

	"github.com/bidikit/bidikit/internal/collab/ot"
	"github.com/bidikit/bidikit/internal/collab/trace"
	collabv1 "github.com/bidikit/bidikit/proto/bidikit/collab/v1"
	"github.com/bidikit/bidikit/reference/collab"
	"github.com/bidikit/bidikit/reference/store"
)

var _ = Describe("Concurrent trace replay", func() {
	It("replays clownschool by its agents as concurrent editors to exactly its endContent", func(ctx SpecContext) {
		path, err := trace.Path("clownschool.json.gz")
		Expect(err).NotTo(HaveOccurred(), "fixture missing: the clownschool editing trace (testdata/traces/clownschool.json.gz)")
		tr, err := trace.Load(path)
		Expect(err).NotTo(HaveOccurred())
		Expect(tr.Concurrent()).To(BeTrue())
		// What this asserts: each agent of the trace is a client with its
		// own stream and replica. Transaction i is made by its agent when
		// the replica holds exactly the txn's causal history (server
		// versions 1..Known plus the agent's own txns), at the txn's own
		// positions, and committed as server version i+1; remote ops are
		// taken in only when the trace's parents say the agent had them.
		// The server text, every replica once it has taken in everything,
		// and the replay of the store's log must all equal endContent.
		st := store.NewMemory(100_000)
		srv, stop := startServer(testConfig(), st)
		DeferCleanup(stop)
		cc := dial(srv.addr)
		agents, err := replayCausal(ctx, cc, tr, "clownschool")
		DeferCleanup(func() {
			for _, c := range agents {
				_ = c.close()
			}
		})
		Expect(err).NotTo(HaveOccurred())
		n := len(tr.Txns)
		text, version, err := srv.svc.Text("clownschool")
		Expect(err).NotTo(HaveOccurred())
		Expect(version).To(Equal(uint64(n)))
		Expect(text == tr.EndContent).To(BeTrue(), "server text (%d code points) differs from endContent (%d) first at byte %d",
			len(text), len(tr.EndContent), firstDiff(text, tr.EndContent))
		for _, c := range agents {
			Expect(c.fetch(ctx, n)).To(Succeed())
			Expect(c.takeIn(n)).To(Succeed())
			Expect(c.pending).To(BeEmpty())
			Expect(c.rope.String() == tr.EndContent).To(BeTrue(), "agent %s's replica differs from endContent", c.id)
		}
		for _, c := range agents {
			Expect(c.close()).To(Succeed())
		}
		agents = nil
		logText, logVersion := replayStore(st, "clownschool")
		Expect(logVersion).To(Equal(uint64(n)))
		Expect(logText == tr.EndContent).To(BeTrue(), "the store's log replays to a text other than endContent")
		GinkgoWriter.Printf("clownschool: %d txns (%d patches) by %d agents committed as %d versions; final text %d code points == endContent\n",
			n, tr.Patches(), tr.NumAgents, version, len(text))
	}, SpecTimeout(120*time.Second))
})

// firstDiff is the first byte index where a and b differ (-1: equal).
func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) == len(b) {
		return -1
	}
	return min(len(a), len(b))
}

// causalStep is where one transaction of a concurrent trace was made: its
// agent had taken in the server versions 1..Known (transactions 0..Known-1,
// server order being trace order) plus every earlier transaction of its
// own. That is the Jupiter client state that reproduces the transaction's
// causal history (its parents and their ancestors).
type causalStep struct {
	Known int
}

// planCausal derives each transaction's causalStep from the parents graph
// and reports where a transaction's history is not such a state: it would
// then need a replay this client model cannot do. Per agent version vectors
// stand for the ancestor sets, which needs each agent's transactions in a
// history to be a prefix of that agent's (checked through its own ones).
func planCausal(tr *trace.Trace) ([]causalStep, error) {
	agents := 0
	for _, x := range tr.Txns {
		agents = max(agents, x.Agent+1)
	}
	byAgent := make([][]int, agents)
	seen := make([][]int, len(tr.Txns)) // per txn: how many txns of each agent its history holds, itself included
	steps := make([]causalStep, len(tr.Txns))
	for i, x := range tr.Txns {
		if x.Agent < 0 {
			return nil, fmt.Errorf("txn %d: negative agent %d", i, x.Agent)
		}
		vv := make([]int, agents)
		for _, p := range x.Parents {
			for b, c := range seen[p] {
				vv[b] = max(vv[b], c)
			}
		}
		a := x.Agent
		if vv[a] != len(byAgent[a]) {
			return nil, fmt.Errorf("txn %d of agent %d: its history holds %d of the agent's %d earlier txns", i, a, vv[a], len(byAgent[a]))
		}
		known := i
		for b, c := range vv {
			if c < len(byAgent[b]) {
				known = min(known, byAgent[b][c])
			}
		}
		for b, c := range vv {
			if b != a && c > 0 && byAgent[b][c-1] >= known {
				return nil, fmt.Errorf("txn %d of agent %d: its history holds txn %d of agent %d but not every txn before it", i, a, byAgent[b][c-1], b)
			}
		}
		steps[i] = causalStep{Known: known}
		byAgent[a] = append(byAgent[a], i)
		vv[a]++
		seen[i] = vv
	}
	return steps, nil
}

// causalEntry is one server version as an agent's stream delivered it: its
// own op (an Ack) or another agent's op as the server transformed it.
type causalEntry struct {
	own bool
	op  ot.Op
}

// causalAgent replays one agent of a concurrent trace as a Jupiter client
// of the collab service: its replica holds the server versions 1..known
// (taken in only when the trace says the agent had them) plus its own ops
// committed after those (pending), each pending op expressed on the replica
// state before it. Everything but the reader goroutine, which only moves
// events into the buffered channel events, is owned by the spec goroutine.
type causalAgent struct {
	id      string
	stream  collabv1.CollabService_EditClient
	cancel  context.CancelFunc
	events  chan *collabv1.ServerEvent
	readErr chan error

	log     []causalEntry // server versions 1..len(log), as this stream received them
	rope    *ot.Rope
	known   int
	pending []ot.Op
	pendTxn []int // the txn index of each pending op (its version is index+1)
	seq     uint64
}

// openCausalAgent opens document doc on a new stream; the channel holds
// room for capacity events, so the reader never blocks the server's sends.
func openCausalAgent(ctx context.Context, cc *grpc.ClientConn, id, doc string, capacity int) (*causalAgent, error) {
	sctx, cancel := context.WithCancel(withUser(ctx, id))
	st, err := collabv1.NewCollabServiceClient(cc).Edit(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c := &causalAgent{id: id, stream: st, cancel: cancel, rope: ot.NewRope(""),
		events: make(chan *collabv1.ServerEvent, capacity), readErr: make(chan error, 1)}
	go func() {
		for {
			ev, err := st.Recv()
			if err != nil {
				c.readErr <- err
				close(c.events)
				return
			}
			select {
			case c.events <- ev:
			case <-sctx.Done():
				c.readErr <- sctx.Err()
				close(c.events)
				return
			}
		}
	}()
	if err := st.Send(&collabv1.ClientEvent{Event: &collabv1.ClientEvent_Open{Open: &collabv1.Open{Document: doc, ClientId: id}}}); err != nil {
		return c, err
	}
	// Wait for Opened, so that no version is committed before every agent
	// is there to receive it.
	for {
		select {
		case ev, ok := <-c.events:
			if !ok {
				return c, fmt.Errorf("agent %s: stream ended before Opened: %w", id, <-c.readErr)
			}
			if o := ev.GetOpened(); o != nil {
				if o.GetVersion() != 0 {
					return c, fmt.Errorf("agent %s: document %q opened at version %d, want a new one", id, doc, o.GetVersion())
				}
				return c, nil
			}
			if e := ev.GetError(); e != nil {
				return c, fmt.Errorf("agent %s: open: %v", id, e)
			}
		case <-ctx.Done():
			return c, ctx.Err()
		}
	}
}

// fetch reads events until this stream has delivered server version v.
func (c *causalAgent) fetch(ctx context.Context, v int) error {
	for len(c.log) < v {
		var ev *collabv1.ServerEvent
		select {
		case e, ok := <-c.events:
			if !ok {
				return fmt.Errorf("agent %s: stream ended: %w", c.id, <-c.readErr)
			}
			ev = e
		case <-ctx.Done():
			return ctx.Err()
		}
		switch x := ev.GetEvent().(type) {
		case *collabv1.ServerEvent_Ack:
			if got := x.Ack.GetVersion(); got != uint64(len(c.log)+1) {
				return fmt.Errorf("agent %s: ack at version %d after version %d", c.id, got, len(c.log))
			}
			c.log = append(c.log, causalEntry{own: true})
		case *collabv1.ServerEvent_Op:
			if got := x.Op.GetVersion(); got != uint64(len(c.log)+1) {
				return fmt.Errorf("agent %s: remote op at version %d after version %d", c.id, got, len(c.log))
			}
			o, err := collab.FromProto(x.Op.GetOp())
			if err != nil {
				return fmt.Errorf("agent %s: version %d: %w", c.id, x.Op.GetVersion(), err)
			}
			c.log = append(c.log, causalEntry{op: o})
		case *collabv1.ServerEvent_Error:
			return fmt.Errorf("agent %s: error event %v", c.id, x.Error)
		}
	}
	return nil
}

// takeIn advances the replica to server version v (already fetched): an
// own version retires the first pending op, another agent's op is
// transformed past the pending ones and applied.
func (c *causalAgent) takeIn(v int) error {
	if v < c.known {
		return fmt.Errorf("agent %s: asked to go back to version %d from %d", c.id, v, c.known)
	}
	for ; c.known < v; c.known++ {
		e := c.log[c.known]
		if e.own {
			if len(c.pending) == 0 || c.pendTxn[0] != c.known {
				return fmt.Errorf("agent %s: version %d is its own but pending txns are %v", c.id, c.known+1, c.pendTxn)
			}
			c.pending, c.pendTxn = c.pending[1:], c.pendTxn[1:]
			continue
		}
		o := e.op
		var err error
		for j := range c.pending {
			if c.pending[j], o, err = ot.Transform(c.pending[j], o, ot.Right); err != nil {
				return fmt.Errorf("agent %s: version %d: %w", c.id, c.known+1, err)
			}
		}
		if err := c.rope.Apply(o); err != nil {
			return fmt.Errorf("agent %s: applying version %d: %w", c.id, c.known+1, err)
		}
	}
	return nil
}

// rebased returns the last pending op moved onto server version to (all
// its earlier pending ops being committed by then) without changing the
// replica: what the agent would send once it had taken in version to.
func (c *causalAgent) rebased(to int) (ot.Op, error) {
	pend := slices.Clone(c.pending)
	for v := c.known; v < to; v++ {
		e := c.log[v]
		if e.own {
			if len(pend) < 2 {
				return nil, fmt.Errorf("agent %s: version %d is its own but nothing earlier is pending", c.id, v+1)
			}
			pend = pend[1:]
			continue
		}
		o := e.op
		var err error
		for j := range pend {
			if pend[j], o, err = ot.Transform(pend[j], o, ot.Right); err != nil {
				return nil, fmt.Errorf("agent %s: version %d: %w", c.id, v+1, err)
			}
		}
	}
	if len(pend) != 1 {
		return nil, fmt.Errorf("agent %s: %d ops still pending at version %d", c.id, len(pend), to)
	}
	return pend[0], nil
}

// edit applies txn i's patches to the replica as one op, then submits it
// against the earliest server version it can name: the replica's known
// version when nothing else is pending (the server transforms it past the
// rest), else the version just after its last pending op, onto which the
// op is rebased here first.
func (c *causalAgent) edit(i int, x trace.Txn, doc string) error {
	n := c.rope.Len()
	var o ot.Op
	for k, p := range x.Patches {
		q, err := ot.Splice(n, p.Pos, p.Del, p.Ins)
		if err != nil {
			return fmt.Errorf("txn %d patch %d: %w", i, k, err)
		}
		if o == nil {
			o = q
		} else if o, err = ot.Compose(o, q); err != nil {
			return fmt.Errorf("txn %d patch %d: %w", i, k, err)
		}
		n = o.TargetLen()
	}
	if err := c.rope.Apply(o); err != nil {
		return fmt.Errorf("txn %d: %w", i, err)
	}
	c.pending, c.pendTxn = append(c.pending, o), append(c.pendTxn, i)
	base := c.known
	if l := len(c.pendTxn); l > 1 {
		base = c.pendTxn[l-2] + 1
	}
	send, err := c.rebased(base)
	if err != nil {
		return fmt.Errorf("txn %d: %w", i, err)
	}
	c.seq++
	return c.stream.Send(submitEvent(doc, c.id, c.seq, uint64(base), send))
}

// close ends the stream the interop way.
func (c *causalAgent) close() error {
	_ = c.stream.CloseSend()
	for range c.events {
	}
	err := <-c.readErr
	c.cancel()
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// replayCausal replays every transaction of a concurrent trace, in trace
// order, through one stream per agent, waiting for each commit before the
// next (so server version i+1 is txn i). It returns the agents, whose
// replicas the caller can bring up to date and close.
func replayCausal(ctx context.Context, cc *grpc.ClientConn, tr *trace.Trace, doc string) ([]*causalAgent, error) {
	steps, err := planCausal(tr)
	if err != nil {
		return nil, err
	}
	var agents []*causalAgent
	for _, x := range tr.Txns {
		for len(agents) <= x.Agent {
			c, err := openCausalAgent(ctx, cc, fmt.Sprintf("agent%d", len(agents)), doc, len(tr.Txns)+8)
			if c != nil {
				agents = append(agents, c)
			}
			if err != nil {
				return agents, err
			}
		}
	}
	for i, x := range tr.Txns {
		c := agents[x.Agent]
		if err := c.fetch(ctx, i); err != nil {
			return agents, err
		}
		if err := c.takeIn(steps[i].Known); err != nil {
			return agents, fmt.Errorf("txn %d: %w", i, err)
		}
		if err := c.edit(i, x, doc); err != nil {
			return agents, err
		}
		if err := c.fetch(ctx, i+1); err != nil {
			return agents, err
		}
		if !c.log[i].own {
			return agents, fmt.Errorf("txn %d: version %d is not agent %s's op", i, i+1, c.id)
		}
	}
	return agents, nil
}
