package engine

import "github.com/bidikit/bidikit/harness/scenario"

// PlayerParams: joins a match and sends movement inputs at the role's rate.
type PlayerParams struct {
	// StepFraction is the move length as a fraction of the match's max step;
	// above 1 every move is a speed hack that a careful server rejects.
	StepFraction float64 `yaml:"step_fraction"`
}

// CheckParams implements scenario.ParamsChecker.
func (p *PlayerParams) CheckParams(pc *scenario.ParamsCheck) {
	if !(p.StepFraction > 0 && p.StepFraction <= 100) {
		pc.Bad("step_fraction", "must be more than 0 and at most 100 (above 1 is a speed hack the server must reject), got %v", p.StepFraction)
	}
}

func init() {
	registerBehaviour(scenario.Behaviour{Name: "player", Service: scenario.Game, Summary: "walks randomly in a match", DefaultRate: 20},
		func() *PlayerParams { return &PlayerParams{StepFraction: 0.8} },
		func(c *vclient, p *PlayerParams) error {
			c.d = newGameDriver(c, p.StepFraction)
			return nil
		}, nil)
}
