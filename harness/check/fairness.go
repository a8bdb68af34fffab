package check

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"

	"github.com/bidikit/bidikit/harness/event"
)

// fairness is the "fairness" checker for denial-of-service scenarios:
// attackers are throttled (accepted at most rate x time + burst, the excess
// refused with RESOURCE_EXHAUSTED), honest clients see no errors, honest p99
// latency under attack stays within p99_ratio_max of the calm phase (before
// the first attacker send), Jain's index over honest clients' acked
// throughput during the attack is at least jain_min, and the server is
// healthy afterwards.
type fairness struct {
	p FairnessParams

	attackStart time.Duration // first attacker send; 0 = none yet
	attackEnd   time.Duration
	calm, under *hdrhistogram.Histogram
	honestAcks  map[int]int64 // honest client -> acks during the attack
	honestSeen  map[int]bool
	attackers   map[int]*attackerStats
	// faulted marks clients the harness injected a fault into: their
	// stream errors are the fault's doing, not the server's.
	faulted map[int]bool
	v       Verdict
}

type attackerStats struct {
	who      string
	first    time.Duration
	last     time.Duration
	accepted int64
	refused  int64
	sent     int64
	kicked   bool
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
}

func init() {
	Register("fairness", func(decode func(any) error) (Checker, error) {
		p := FairnessParams{P99RatioMax: 1.5, JainMin: 0.9, MinCalmSamples: 100}
		if err := decode(&p); err != nil {
			return nil, err
		}
		if p.Honest == "" || p.Attackers == "" {
			return nil, fmt.Errorf("fairness: honest and attackers must name roles")
		}
		if p.P99RatioMax <= 0 || p.JainMin < 0 || p.JainMin > 1 || p.Rate < 0 || p.Burst < 0 {
			return nil, fmt.Errorf("fairness: p99_ratio_max must be > 0, jain_min within [0,1], rate and burst >= 0")
		}
		return &fairness{p: p,
			calm:       hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3),
			under:      hdrhistogram.New(1, int64(60*time.Second/time.Microsecond), 3),
			honestAcks: map[int]int64{}, honestSeen: map[int]bool{}, attackers: map[int]*attackerStats{},
			faulted: map[int]bool{},
			v:       Verdict{Name: "fairness"}}, nil
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
	if e.Kind == event.Fault {
		f.faulted[e.Client] = true
		return
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
		case event.Ack:
			a.accepted++
		case event.Error, event.Disconnect, event.Kick:
			if e.Code == codes.ResourceExhausted {
				a.refused++
				if e.Kind != event.Error {
					a.kicked = true
				}
			}
		}
	case f.p.Honest:
		switch e.Kind {
		case event.Send:
			f.honestSeen[e.Client] = true
		case event.Deliver:
			us := e.Latency.Microseconds()
			if us < 1 {
				us = 1
			}
			if f.attackStart == 0 || e.At < f.attackStart {
				_ = f.calm.RecordValue(us)
			} else {
				_ = f.under.RecordValue(us)
			}
		case event.Ack:
			if f.attackStart != 0 && e.At >= f.attackStart {
				f.honestAcks[e.Client]++
			}
		case event.Error, event.Disconnect, event.Kick:
			if e.Code != codes.OK && e.Code != codes.Canceled && !f.faulted[e.Client] {
				f.v.Add(Evidence{Scope: e.Scope, Client: clientName(e), At: e.At,
					Detail: fmt.Sprintf("honest %s got %s: %s", clientName(e), codeName(e.Code), e.Detail)})
			}
		}
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
		f.v.Status = NotMeasurable
		f.v.Summary = fmt.Sprintf("no sends from attacker role %q observed", f.p.Attackers)
		return f.v
	}
	var refused int64
	for _, a := range f.attackers {
		refused += a.refused
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
	if refused == 0 {
		f.v.Add(Evidence{Detail: fmt.Sprintf("attackers sent without ever being refused with RESOURCE_EXHAUSTED")})
	}
	notes := []string{}
	calmP99 := time.Duration(f.calm.ValueAtQuantile(99)) * time.Microsecond
	underP99 := time.Duration(f.under.ValueAtQuantile(99)) * time.Microsecond
	if f.calm.TotalCount() >= f.p.MinCalmSamples && f.under.TotalCount() > 0 {
		ratio := float64(underP99) / float64(max(calmP99, time.Microsecond))
		notes = append(notes, fmt.Sprintf("honest p99 %s calm, %s under attack (x%.2f)", calmP99, underP99, ratio))
		if ratio > f.p.P99RatioMax {
			f.v.Add(Evidence{At: f.attackStart, Detail: fmt.Sprintf("honest p99 under attack %s is %.2fx the calm p99 %s (max %.2fx)",
				underP99, ratio, calmP99, f.p.P99RatioMax)})
		}
	} else {
		notes = append(notes, fmt.Sprintf("p99 ratio not measurable (%d calm samples, %d under attack)", f.calm.TotalCount(), f.under.TotalCount()))
	}
	if len(f.honestSeen) > 0 {
		xs := make([]float64, 0, len(f.honestSeen))
		for c := range f.honestSeen {
			xs = append(xs, float64(f.honestAcks[c]))
		}
		j := Jain(xs)
		notes = append(notes, fmt.Sprintf("Jain index %.3f over %d honest clients", j, len(xs)))
		if j < f.p.JainMin {
			f.v.Add(Evidence{Detail: fmt.Sprintf("Jain's fairness index over honest clients' acked sends is %.3f, below %.3f", j, f.p.JainMin)})
		}
	}
	if env != nil {
		if ok, err := env.Healthy(ctx); err != nil || !ok {
			f.v.Add(Evidence{Detail: fmt.Sprintf("server not healthy after the attack (ok=%v, err=%v)", ok, err)})
		}
	}
	summarise(&f.v, fmt.Sprintf("attackers throttled (%d refusals); %v", refused, notes), "%d fairness violations; %v", f.v.Violations, notes)
	return f.v
}
