package fault

import (
	"context"
	"fmt"
)

// ParamError is a fault parameter with an impossible value. The scenario
// parser adds the file and line; Error names the fault and the parameter.
type ParamError struct {
	Fault string // registered fault name, e.g. "pause"
	Param string // parameter as written in the scenario, e.g. "duration"
	Msg   string // what is wrong, e.g. "must be > 0, got 0s"
}

func (e *ParamError) Error() string {
	return fmt.Sprintf("fault %q: parameter %s %s", e.Fault, e.Param, e.Msg)
}

// paramErr builds a *ParamError with a formatted message.
func paramErr(fault, param, format string, args ...any) error {
	return &ParamError{Fault: fault, Param: param, Msg: fmt.Sprintf(format, args...)}
}

// noParams strictly decodes into an empty struct, so a fault without
// parameters rejects any that a scenario gives it.
func noParams(decode func(any) error) error {
	var none struct{}
	return decode(&none)
}

// forEach calls fn on every non-nil target; it stops early, returning the
// context's error, once ctx is done. Stream faults use it to fan out.
func forEach(ctx context.Context, targets []Client, fn func(Client)) error {
	for _, c := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if c != nil {
			fn(c)
		}
	}
	return nil
}
