package engine

import (
	"fmt"

	"github.com/bidikit/bidikit/harness/scenario"
)

// OversizeParams: at the role's rate sends messages of Bytes payload.
type OversizeParams struct {
	Bytes int `yaml:"bytes"`
}

// CheckParams implements scenario.ParamsChecker.
func (p *OversizeParams) CheckParams(pc *scenario.ParamsCheck) { pc.BodyBytes("bytes", p.Bytes) }

func init() {
	registerBehaviour(scenario.Behaviour{Name: "oversize-sender", Attack: true, Summary: "sends messages over the size limit", DefaultRate: 1},
		func() *OversizeParams { return &OversizeParams{Bytes: 8 << 20} },
		func(c *vclient, p *OversizeParams) (err error) {
			if c.d, err = serviceDriver(c, 1, false); err != nil {
				return err
			}
			o, ok := c.d.(Oversizer)
			if !ok {
				return fmt.Errorf("the %s service's driver cannot send oversized messages (no Oversizer)", c.svc.Name)
			}
			bytes := p.Bytes
			c.act = func(w Stream, n int) error {
				for range n {
					if err := o.Oversized(w, bytes); err != nil {
						return err
					}
				}
				return nil
			}
			return nil
		}, nil)
}
