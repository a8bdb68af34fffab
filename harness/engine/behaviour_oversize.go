package engine

import "github.com/bidikit/bidikit/harness/scenario"

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
			c.d, err = serviceDriver(c, 1, false)
			bytes := p.Bytes
			c.act = func(w *writer, n int) error {
				for range n {
					if err := c.d.oversized(w, bytes); err != nil {
						return err
					}
				}
				return nil
			}
			return err
		}, nil)
}
