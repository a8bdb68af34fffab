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

// forEach calls fn on every non-nil target as an I, the fault's own
// interface; it stops early, returning the context's error, once ctx is
// done. A target that does not implement I is an error naming the fault
// and the client (a driver that cannot take that fault). Stream faults use
// it to fan out.
func forEach[I any](ctx context.Context, fault string, targets []Target, fn func(I)) error {
	for _, t := range targets {
		if err := ctx.Err(); err != nil {
			return err
		}
		if t == nil {
			continue
		}
		c, ok := t.(I)
		if !ok {
			return fmt.Errorf("fault %s: client %d (role %s) cannot take it: it does not implement %T", fault, t.Index(), t.Role(), (*I)(nil))
		}
		fn(c)
	}
	return nil
}
