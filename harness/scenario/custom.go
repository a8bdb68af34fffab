package scenario

import (
	"context"
	"time"

	"github.com/bidikit/bidikit/harness/protocol"
)

// The rules of `service: custom` scenarios (issue #16): the `protocol:`
// block (harness/protocol) and the checks a mapping lets run. The custom
// driver that runs them is harness/engine/custom.

// fileCompileLimit bounds the parse-time compile of a mapping whose
// descriptors come from files (a protoset, .proto sources).
const fileCompileLimit = 30 * time.Second

// protocolBlock decodes the `protocol:` block of a custom scenario into
// s.Protocol, keeping every problem's file:line:col. Descriptors from a
// protoset or .proto files are loaded and the whole mapping compiled now,
// so a typo is a parse error; with server reflection the custom driver
// compiles it when the run starts, before any client connects. Another
// service's scenario may not have the block.
func (w *walker) protocolBlock(raw *rawScenario, s *Scenario) {
	if raw.Service != Custom {
		if w.Has("protocol") {
			w.Errorf("protocol", "only a service: custom scenario describes its protocol; service %s speaks its own bidikit proto", raw.Service)
		}
		return
	}
	if !w.Has("protocol") {
		w.Errorf("", "missing field protocol: a custom service needs `protocol:` with at least method and incoming (see docs/custom-servers.md)")
		return
	}
	spec, err := protocol.SpecFromNode(w.File, w.src, raw.Protocol)
	if err != nil {
		w.addAll(err)
		return
	}
	s.Protocol = spec
	if !spec.FromFiles() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), fileCompileLimit)
	defer cancel()
	d, err := protocol.LoadDescriptors(ctx, spec, nil, "")
	if err == nil {
		_, err = protocol.Compile(spec, d)
	}
	if err != nil {
		w.addAll(err)
	}
}

// addAll records each of err's joined problems.
func (w *walker) addAll(err error) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			w.Add(e)
		}
		return
	}
	w.Add(err)
}

// customChecks marks each check of a custom scenario that needs a field
// the mapping does not provide as not measurable, naming the field
// (protocol.Spec.NotMeasurable; CheckSpec.New): it runs only when it can
// judge.
func (w *walker) customChecks(s *Scenario) {
	if s.Protocol == nil {
		return
	}
	for i := range s.Checks {
		cs := &s.Checks[i]
		why := s.Protocol.NotMeasurable(cs.Name)
		if why == "" {
			continue
		}
		cs.NotMeasurable = why
	}
}
