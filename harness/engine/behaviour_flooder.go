package engine

import "github.com/bidikit/bidikit/harness/scenario"

// FlooderParams: sends as fast as its rate allows (set it high), ignoring
// errors, on any service.
type FlooderParams struct {
	BodyBytes int `yaml:"body_bytes"`
}

// CheckParams implements scenario.ParamsChecker.
func (p *FlooderParams) CheckParams(pc *scenario.ParamsCheck) {
	pc.BodyBytes("body_bytes", p.BodyBytes)
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "flooder", Attack: true, Summary: "sends far over any sane rate", DefaultRate: 2000},
		func() *FlooderParams { return &FlooderParams{BodyBytes: 32} },
		func(c *vclient, p *FlooderParams) (err error) {
			c.d, err = serviceDriver(c, p.BodyBytes, true)
			return err
		}, nil)
}
