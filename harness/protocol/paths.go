package protocol

import (
	"sort"
	"strings"
)

// Path names one piece of a mapping a caller may need, as the mapping's
// YAML spells it under protocol: "outgoing.send", "incoming.delivery.seq".
type Path string

// In is the path of a field read for a kind: In(Delivery, FieldSeq) is
// "incoming.delivery.seq".
func In(k Kind, f Field) Path { return Path("incoming." + k.String() + "." + f.String()) }

// Rule is the path of a kind's rule: Rule(Ack) is "incoming.ack", mapped
// when the mapping can tell that kind of message.
func Rule(k Kind) Path { return Path("incoming." + k.String()) }

// Out is the path of an outgoing message: Out(OutSend) is "outgoing.send";
// an extra is "outgoing.extras.NAME".
func Out(name string) Path {
	if contains(outgoingNames, name) {
		return Path("outgoing." + name)
	}
	return Path("outgoing.extras." + name)
}

// Fields lists every mapped path, sorted: "incoming.ack",
// "incoming.ack.seq", ..., "outgoing.send".
func (m *Mapping) Fields() []Path {
	out := make([]Path, 0, len(m.mapped))
	for p := range m.mapped {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Mapped says whether p is mapped: an outgoing message (Out), an incoming
// kind (Rule) or a field read for a kind (In).
func (m *Mapping) Mapped(p Path) bool { return m.mapped[p] }

// Missing returns the paths of need that the mapping does not map, in the
// order given; none means everything needed is there. A check that needs
// them reports not-measurable with MissingReason.
func (m *Mapping) Missing(need ...Path) []Path {
	var out []Path
	for _, p := range need {
		if !m.mapped[p] {
			out = append(out, p)
		}
	}
	return out
}

// MissingReason words missing paths for a not-measurable verdict:
// "protocol.incoming.delivery.seq is not mapped".
func MissingReason(missing []Path) string {
	if len(missing) == 0 {
		return ""
	}
	names := make([]string, len(missing))
	for i, p := range missing {
		names[i] = "protocol." + string(p)
	}
	verb := " is not mapped"
	if len(names) > 1 {
		verb = " are not mapped"
	}
	return strings.Join(names, ", ") + verb
}
