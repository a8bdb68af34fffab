package engine

import (
	"time"

	"github.com/bidikit/bidikit/harness/scenario"
)

// SlowReaderParams: joins and reads with a delay before every receive.
type SlowReaderParams struct {
	ReadDelay time.Duration `yaml:"read_delay"`
}

// CheckParams implements scenario.ParamsChecker.
func (p *SlowReaderParams) CheckParams(pc *scenario.ParamsCheck) {
	if p.ReadDelay <= 0 {
		pc.Bad("read_delay", "must be more than 0, got %s", p.ReadDelay)
	}
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "slow-reader", Attack: true, Summary: "reads with a delay before every receive"},
		func() *SlowReaderParams { return &SlowReaderParams{ReadDelay: time.Second} },
		func(c *vclient, p *SlowReaderParams) (err error) {
			c.d, err = serviceDriver(c, 1, false)
			c.readDelay = p.ReadDelay
			return err
		}, nil)
}
