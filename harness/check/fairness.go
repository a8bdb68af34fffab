package check

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
)

// fairness is the "fairness" checker for denial-of-service scenarios. It
// judges what the server did to honest traffic while attackers ran:
//   - attackers are throttled: accepted at most rate x time + burst, the
//     excess refused with RESOURCE_EXHAUSTED;
//   - honest clients see no errors the harness did not cause;
//   - honest latency under attack stays within p99_ratio_max of the calm
//     phase (before the first attacker send), over messages both sent and
//     received by honest clients (an attacker's own send backlog rides in
//     its messages' timestamps and is not the server's doing), and honest
//     send-to-ack latency likewise;
//   - honest clients that sent under attack were served: none starved
//     (zero acks, or zero tick updates for a game player), and Jain's index
//     over their acks (tick updates) is at least jain_min;
//   - the server is healthy afterwards.
//
// Attackers that run HTTP/2 attacks below gRPC (event.Attack, harness/
// h2attack) send no gRPC message there is to refuse: the attack's start
// begins the phase under attack, and only honest traffic is judged (the
// throttling criteria apply to the attackers' gRPC sends, when they make
// any).
//
// The harness's own lag (event.HarnessLag) is weighed before blaming the
// server: a p99 over the bound by no more than the harness's lag under
// attack could add to a message (latencyAllowance), and an honest
// RESOURCE_EXHAUSTED (a slow-consumer cut, or a rate limit hit by the
// catch-up burst of a late sender) within a second after the harness
// paused for more than harness_pause_max, are not measurable rather than
// violations: the load generator starved, not the server.
//
// Any criterion it cannot measure (too few calm samples, no honest sends
// under attack, no health answer, the harness's lag) makes the verdict not
// measurable, naming it; a proven violation still fails.
type fairness struct {
	p FairnessParams

	attackStart time.Duration // first attacker send; 0 = none yet
	attackEnd   time.Duration
	// calm/under: honest-to-honest delivery latency; calmAck/underAck:
	// honest send-to-ack latency.
	calm, under       *hdrhistogram.Histogram
	calmAck, underAck *hdrhistogram.Histogram
	honestUsers       map[string]bool // user ids of honest clients
	honestAcks        map[int]int64   // honest client -> acks during the attack
	honestSent        map[int]string  // honest clients that sent during the attack -> name
	attackers         map[int]*attackerStats
	// h2 names the HTTP/2 attacks the attackers ran (bounded by the
	// attacks there are).
	h2 map[string]bool
	// faulted marks clients the harness injected a fault into on their
	// current stream (-1: a run-wide fault): their stream ends are the
	// fault's doing, not the server's (Error and Kick events still are).
	faulted map[int]bool
	// lag is the harness's own lag; exhaustedAt holds when each honest
	// RESOURCE_EXHAUSTED answer came, until the verdict weighs each
	// against it (at most maxWeighed; exhaustedN counts them all), and
	// exhausted the first MaxEvidence of them as evidence.
	lag         harnessLag
	exhausted   []Evidence
	exhaustedAt []time.Duration
	exhaustedN  int
	v           Verdict
}

type attackerStats struct {
	who      string
	first    time.Duration
	last     time.Duration
	accepted int64
	refused  int64
	uncoded  int64 // error messages without a status code (event.FieldNoCode)
	sent     int64
	kicked   bool
	h2       int64 // HTTP/2 attacks started (event.Attack)
}

// FairnessParams are the fairness checker's parameters.
type FairnessParams struct {
	// Honest and Attackers name roles.
	Honest    string `yaml:"honest"`
	Attackers string `yaml:"attackers"`
	// Rate and Burst are the server's per-user limit (accepted events per
	// second, bucket size); 0 skips the throttling bound but still requires
	// RESOURCE_EXHAUSTED refusals.
	Rate  float64 `yaml:"rate"`
	Burst int64   `yaml:"burst"`
	// P99RatioMax bounds honest p99 under attack over calm p99.
	P99RatioMax float64 `yaml:"p99_ratio_max"`
	// JainMin is the least Jain's fairness index over honest clients.
	JainMin float64 `yaml:"jain_min"`
	// MinCalmSamples is the least calm-phase latency samples for the ratio
	// to be judged (fewer: that part is reported as not measurable).
	MinCalmSamples int64 `yaml:"min_calm_samples"`
	// HarnessPauseMax is the longest the harness may have paused (its own
	// scheduler lag plus dispatcher wait) in the second before an honest
	// RESOURCE_EXHAUSTED for that answer to be blamed on the server.
	HarnessPauseMax time.Duration `yaml:"harness_pause_max"`
}

func init() {
	Register("fairness", func(decode func(any) error) (Checker, error) {
		p := FairnessParams{P99RatioMax: 1.5, JainMin: 0.9, MinCalmSamples: 100, HarnessPauseMax: 100 * time.Millisecond}
		if err := decode(&p); err != nil {
			return nil, err
		}
		if p.Honest == "" || p.Attackers == "" {
			return nil, fmt.Errorf("fairness: honest and attackers must name roles")
		}
		switch {
		case p.P99RatioMax <= 0:
			return nil, fmt.Errorf("fairness: p99_ratio_max is %g, want > 0", p.P99RatioMax)
		case p.JainMin < 0 || p.JainMin > 1:
			return nil, fmt.Errorf("fairness: jain_min is %g, want within [0, 1]", p.JainMin)
		case p.Rate < 0:
			return nil, fmt.Errorf("fairness: rate is %g, want >= 0", p.Rate)
		case p.Burst < 0:
			return nil, fmt.Errorf("fairness: burst is %d, want >= 0", p.Burst)
		case p.HarnessPauseMax <= 0:
			return nil, fmt.Errorf("fairness: harness_pause_max is %s, want > 0", p.HarnessPauseMax)
		}
		hist := func() *hdrhistogram.Histogram { return hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3) }
		return &fairness{p: p, calm: hist(), under: hist(), calmAck: hist(), underAck: hist(),
			honestUsers: map[string]bool{}, honestAcks: map[int]int64{}, honestSent: map[int]string{},
			attackers: map[int]*attackerStats{}, faulted: map[int]bool{}, h2: map[string]bool{},
			v: Verdict{Name: "fairness"}}, nil
	})
}

func (f *fairness) attacker(e *event.Event) *attackerStats {
	a := f.attackers[e.Client]
	if a == nil {
		a = &attackerStats{who: clientName(e), first: e.At}
		f.attackers[e.Client] = a
	}
	return a
}

func (f *fairness) Observe(e *event.Event) {
	if f.lag.observe(e) {
		return
	}
	switch e.Kind {
	case event.Fault:
		f.faulted[e.Client] = true // -1: a run-wide fault (every connection, or the server process)
		return
	case event.Connect:
		delete(f.faulted, e.Client) // a new stream: no fault on it yet
	}
	switch e.Role {
	case f.p.Attackers:
		a := f.attacker(e)
		a.last = max(a.last, e.At)
		switch e.Kind {
		case event.Send:
			a.sent++
			if f.attackStart == 0 || e.At < f.attackStart {
				f.attackStart = e.At
			}
			f.attackEnd = max(f.attackEnd, e.At)
		case event.Attack:
			if e.Field == event.AttackStart {
				a.h2++
				if len(f.h2) < 64 {
					f.h2[e.Scope] = true
				}
				if f.attackStart == 0 || e.At < f.attackStart {
					f.attackStart = e.At
				}
			}
			f.attackEnd = max(f.attackEnd, e.At)
		case event.Ack:
			a.accepted++
		case event.Error, event.Disconnect, event.Kick:
			if e.Field == event.FieldNoCode {
				a.uncoded++
			}
			if e.Code == codes.ResourceExhausted {
				a.refused++
				if e.Kind != event.Error {
					a.kicked = true
				}
			}
		}
	case f.p.Honest:
		if e.User != "" {
			f.honestUsers[e.User] = true
		}
		underAttack := f.attackStart != 0 && e.At >= f.attackStart
		switch e.Kind {
		case event.Send:
			if underAttack {
				f.honestSent[e.Client] = clientName(e)
			}
		case event.Deliver:
			if !f.honestUsers[e.Sender] || e.Replay || e.Latency <= 0 {
				return // an attacker's message, a replay, or no timestamp
			}
			record(f.calm, f.under, underAttack, e.Latency)
		case event.Ack, event.Tick:
			// A game's inputs are answered by tick updates, not acks.
			if underAttack {
				f.honestAcks[e.Client]++
			}
			if e.Latency > 0 && !e.Duplicate {
				record(f.calmAck, f.underAck, underAttack, e.Latency)
			}
		case event.Error, event.Disconnect, event.Kick:
			// A stream end the harness's fault may have caused (on this
			// stream, or on every connection) is not the server's; an
			// Error or a Kick is what the server said, fault or not.
			brokenByFault := e.Kind == event.Disconnect && (f.faulted[e.Client] || f.faulted[-1])
			if e.Code != codes.OK && e.Code != codes.Canceled && !brokenByFault && e.Field != event.FieldCloseGrace && e.Field != event.FieldClientEnd {
				ev := Evidence{Scope: e.Scope, Client: clientName(e), At: e.At,
					Detail: fmt.Sprintf("honest %s got %s: %s", clientName(e), codeName(e.Code), e.Detail)}
				if e.Code != codes.ResourceExhausted {
					f.v.Add(ev)
				} else {
					// Weighed against the harness's lag in Verdict.
					f.exhaustedN++
					if len(f.exhaustedAt) < maxWeighed {
						f.exhaustedAt = append(f.exhaustedAt, e.At)
					}
					if len(f.exhausted) < MaxEvidence {
						f.exhausted = append(f.exhausted, ev)
					}
				}
			}
		}
	}
}

// record adds d to calm or under (in microseconds, at least 1).
func record(calm, under *hdrhistogram.Histogram, underAttack bool, d time.Duration) {
	us := max(d.Microseconds(), 1)
	if underAttack {
		_ = under.RecordValue(us)
	} else {
		_ = calm.RecordValue(us)
	}
}

// Jain returns Jain's fairness index of xs: 1 when all equal, 1/n when one
// gets everything.
func Jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(xs)) * sq)
}

func (f *fairness) Verdict(ctx context.Context, env Env) Verdict {
	if len(f.attackers) == 0 || f.attackStart == 0 {
		return notMeasurable(&f.v, "no sends or HTTP/2 attacks from attacker role %q observed", f.p.Attackers)
	}
	var refused, sent, h2, uncoded int64
	for _, a := range f.attackers {
		refused += a.refused
		uncoded += a.uncoded
		sent += a.sent
		h2 += a.h2
		if f.p.Rate > 0 {
			span := (a.last - a.first).Seconds()
			allowed := int64(math.Ceil(f.p.Rate*span)) + f.p.Burst
			if a.accepted > allowed {
				f.v.Add(Evidence{Client: a.who, At: a.last,
					Detail: fmt.Sprintf("attacker %s had %d sends accepted over %.1fs; the limit allows %d (rate %g/s + burst %d)",
						a.who, a.accepted, span, allowed, f.p.Rate, f.p.Burst)})
			}
		}
	}
	var unmeasured []string
	switch {
	case refused == 0 && uncoded > 0:
		// Refused perhaps, in words no check can read.
		unmeasured = append(unmeasured, fmt.Sprintf("whether the attackers were refused: they got %d error message(s) without a status code (error.code unmapped, unset or 0)", uncoded))
	case refused == 0 && (sent > 0 || h2 == 0):
		f.v.Add(Evidence{At: f.attackStart, Detail: fmt.Sprintf("attackers sent %d messages without ever being refused with RESOURCE_EXHAUSTED", sent)})
	}
	notes := []string{fmt.Sprintf("attackers sent %d, refused %d", sent, refused)}
	if h2 > 0 {
		notes[0] = fmt.Sprintf("attackers ran %d HTTP/2 attack(s)%s below gRPC from %s (judged on honest traffic)", h2, f.h2Names(), f.attackStart.Round(time.Millisecond))
		if sent > 0 {
			notes = append(notes, fmt.Sprintf("attackers sent %d, refused %d", sent, refused))
		}
	}
	f.weighExhausted(&unmeasured)
	lagUnder := f.lag.in(f.attackStart, f.attackEnd)
	notes = append(notes, lagUnder.String()+" under attack")
	measuredRatios := 0
	ratio := func(what string, calm, under *hdrhistogram.Histogram) {
		if calm.TotalCount() == 0 && under.TotalCount() == 0 {
			notes = append(notes, fmt.Sprintf("no honest %s latency in this service", what))
			return
		}
		if calm.TotalCount() < f.p.MinCalmSamples || under.TotalCount() == 0 {
			unmeasured = append(unmeasured, fmt.Sprintf("%s p99 ratio (%d calm samples of %d needed, %d under attack)",
				what, calm.TotalCount(), f.p.MinCalmSamples, under.TotalCount()))
			return
		}
		calmP99 := time.Duration(calm.ValueAtQuantile(99)) * time.Microsecond
		underP99 := time.Duration(under.ValueAtQuantile(99)) * time.Microsecond
		measuredRatios++
		r := float64(underP99) / float64(max(calmP99, time.Microsecond))
		notes = append(notes, fmt.Sprintf("honest %s p99 %s calm, %s under attack (x%.2f over %d samples)", what, calmP99, underP99, r, under.TotalCount()))
		if r <= f.p.P99RatioMax {
			return
		}
		excess := underP99 - time.Duration(f.p.P99RatioMax*float64(calmP99))
		if lagUnder.windows > 0 && excess <= lagUnder.latencyAllowance() {
			unmeasured = append(unmeasured, fmt.Sprintf("honest %s p99 ratio: %s under attack is %.2fx the calm %s (max %.2fx), but %s under attack can add up to %s to a message, more than the excess %s: not blamed on the server",
				what, underP99, r, calmP99, f.p.P99RatioMax, lagUnder, lagUnder.latencyAllowance().Round(time.Millisecond), excess.Round(time.Millisecond)))
			return
		}
		f.v.Add(Evidence{At: f.attackStart, Detail: fmt.Sprintf("honest %s p99 under attack%s %s is %.2fx the calm p99 %s (max %.2fx); %s",
			what, f.h2Names(), underP99, r, calmP99, f.p.P99RatioMax, lagUnder)})
	}
	ratio("delivery", f.calm, f.under)
	ratio("send-to-ack", f.calmAck, f.underAck)
	if measuredRatios == 0 && len(unmeasured) == 0 {
		unmeasured = append(unmeasured, "honest latency (no honest delivery or send-to-ack latency observed)")
	}
	if len(f.honestSent) == 0 {
		unmeasured = append(unmeasured, "honest service under attack (no honest client sent during the attack)")
	} else {
		ids := make([]int, 0, len(f.honestSent))
		for c := range f.honestSent {
			ids = append(ids, c)
		}
		sort.Ints(ids)
		xs := make([]float64, 0, len(ids))
		starved := 0
		for _, c := range ids {
			n := f.honestAcks[c]
			xs = append(xs, float64(n))
			if n == 0 {
				starved++
				f.v.Add(Evidence{Client: f.honestSent[c], At: f.attackStart,
					Detail: fmt.Sprintf("honest %s sent during the attack and got no ack: starved", f.honestSent[c])})
			}
		}
		if starved < len(ids) {
			j := Jain(xs)
			notes = append(notes, fmt.Sprintf("Jain index %.3f over %d honest senders", j, len(xs)))
			if j < f.p.JainMin {
				f.v.Add(Evidence{Detail: fmt.Sprintf("Jain's fairness index over honest clients' acked sends is %.3f, below %.3f", j, f.p.JainMin)})
			}
		}
	}
	if env == nil {
		unmeasured = append(unmeasured, "server health (no target to ask)")
	} else if ok, err := env.Healthy(ctx); err != nil || !ok {
		f.v.Add(Evidence{Detail: fmt.Sprintf("server not healthy after the attack (ok=%v, err=%v)", ok, err)})
	}
	if f.v.Violations == 0 && len(unmeasured) > 0 {
		return notMeasurable(&f.v, "%s; measured: %s", strings.Join(unmeasured, "; "), strings.Join(notes, "; "))
	}
	summarise(&f.v, "attackers throttled, honest clients served: "+strings.Join(notes, "; "),
		"%d fairness violations; %s", f.v.Violations, strings.Join(notes, "; "))
	if len(unmeasured) > 0 {
		f.v.Summary += "; not measured: " + strings.Join(unmeasured, "; ")
	}
	return f.v
}

// h2Names renders the HTTP/2 attacks the attackers ran, " (a, b)", or ""
// when they ran none.
func (f *fairness) h2Names() string {
	if len(f.h2) == 0 {
		return ""
	}
	names := make([]string, 0, len(f.h2))
	for n := range f.h2 {
		names = append(names, n)
	}
	sort.Strings(names)
	return " (" + strings.Join(names, ", ") + ")"
}

// weighExhausted blames the server for each honest RESOURCE_EXHAUSTED the
// harness did not provoke by pausing: one preceded, within a second, by a
// harness pause longer than HarnessPauseMax is named in unmeasured instead.
// Beyond the MaxEvidence kept, the rest follow the last one kept.
func (f *fairness) weighExhausted(unmeasured *[]string) {
	excused, blamed := 0, 0
	var first lagIn
	for i, at := range f.exhaustedAt {
		l := f.lag.in(max(at-time.Second, 0), at)
		if l.windows > 0 && l.pause() > f.p.HarnessPauseMax {
			if excused == 0 {
				first = l
			}
			excused++
			continue
		}
		blamed++
		if i < len(f.exhausted) {
			f.v.Add(f.exhausted[i])
		} else {
			f.v.Violations++
		}
	}
	if excused > 0 {
		*unmeasured = append(*unmeasured, fmt.Sprintf("%d honest RESOURCE_EXHAUSTED answer(s) came within a second after the harness paused longer than %s (first: %s): a slow reader or a catch-up burst of the harness's own making, not blamed on the server",
			excused, f.p.HarnessPauseMax, first))
	}
	if rest := f.exhaustedN - len(f.exhaustedAt); rest > 0 && blamed == 0 {
		*unmeasured = append(*unmeasured, fmt.Sprintf("%d further honest RESOURCE_EXHAUSTED answer(s) past the %d weighed against the harness's lag", rest, maxWeighed))
	}
}

// maxWeighed bounds the honest RESOURCE_EXHAUSTED answers fairness keeps
// to weigh against the harness's lag (8 bytes each).
const maxWeighed = 100_000
