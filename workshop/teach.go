package workshop

import (
	"fmt"
	"io"
	"strings"

	"github.com/bidikit/bidikit/harness/check"
)

// lessons say, per check, what it watches and what a failure usually means,
// in words for a student.
var lessons = map[string]string{
	"total-order":     "Every member of a room must see the same message at the same sequence number. Two members disagreeing means the server numbered or fanned out messages in more than one place.",
	"delivery-order":  "Each member must receive a room's messages in seq order: after seq 42, never seq 41. A violation means two deliveries to the same member overtook each other inside the server, even though each arrived and everyone agrees on the numbering: the order of the Sends on one stream is the order the member sees.",
	"no-gaps":         "After joining, a member must receive seq n, n+1, n+2, ... with nothing skipped. A gap means a message was dropped on the way to that member without telling it.",
	"no-duplicates":   "One message must be stored once and delivered once per member. A duplicate means a resend was stored again or a member got the same seq twice.",
	"no-lost-acks":    "Once the server acknowledged a message, every member present must get it. A lost ack means the server said \"stored\" and then did not deliver.",
	"sender-fifo":     "One sender's messages must keep their order. A violation means two of the sender's messages overtook each other inside the server.",
	"realtime-order":  "A message acknowledged before another was even sent must come first. A violation means the server's order does not follow time.",
	"resume-complete": "A member who resumes from seq n must get everything after n, or be told it cannot.",
	"convergence":     "When the editing stops, every editor's text must equal the server's. A divergence means operations were applied in a context they were not made for: the server must transform an operation against everything committed after its base version.",
	"game-invariants": "The server is the referee: ticks move forward, nobody stands outside the map, nobody moves further than the inputs processed allow. A violation means the server applied what a client asked without checking it.",
	"status-codes":    "Bad input must get the documented status code, never UNKNOWN or INTERNAL, and the server must keep serving.",
	"fairness":        "An abusive client must be throttled or cut off (RESOURCE_EXHAUSTED) while honest clients keep their latency and see no errors. A failure means one client can hurt everyone else.",
	"leaks":           "Some seconds after every client has gone, the server's goroutines, memory and open streams must be back near where they started. A leak means something per client outlives the client.",
}

// Explain writes, for a student, what the outcome means: each failed check
// with its lesson, up to three pieces of evidence, and the hint at
// hintLevel (1-based, capped at the last hint) from the sheet in lang. It
// ends with the verdict line: GREEN only when out.Green(); RED with the
// failed checks (and any not measurable); NOT MEASURABLE when nothing
// failed but some check could not look (never GREEN).
func Explain(w io.Writer, ex Exercise, out Outcome, lang string, hintLevel int) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Exercise %d: %s\nTarget: %s\n\n", ex.Number, ex.Title, out.Target)
	hints := ex.Hints(lang)
	for _, s := range out.Scenarios {
		fmt.Fprintf(&b, "Scenario %s: %d clients, %d sent, %d acked, %d delivered\n", s.Name, s.Clients,
			s.Messages.Sent, s.Messages.Acked, s.Messages.Delivered)
		if s.Failure != "" {
			fmt.Fprintf(&b, "  ✗ could not run: %s\n", s.Failure)
			b.WriteString("    Is your server running and listening on the target address? Start it with `make run`.\n")
			continue
		}
		for _, v := range s.Checks {
			switch v.Status {
			case check.Pass:
				fmt.Fprintf(&b, "  ✓ %-16s %s\n", v.Name, v.Summary)
				continue
			case check.NotMeasurable:
				fmt.Fprintf(&b, "  ? %-16s not measurable: %s\n", v.Name, v.Summary)
				b.WriteString("    Not measurable is not a pass: this check could not look, so it proves nothing either way.\n")
				if v.Name == "leaks" {
					b.WriteString("    Give the admin URL of your server (--admin-url http://127.0.0.1:7071) so its goroutines can be counted.\n")
				}
				continue
			}
			fmt.Fprintf(&b, "  ✗ %-16s %s\n", v.Name, v.Summary)
			if l := lessons[v.Name]; l != "" {
				fmt.Fprintf(&b, "    What it means: %s\n", l)
			}
			for i, e := range v.Evidence {
				if i == 3 {
					// Violations counts past the evidence kept; a leak is one
					// violation with several pieces of evidence (its stacks).
					fmt.Fprintf(&b, "      … and %d more\n", max(v.Violations, len(v.Evidence))-3)
					break
				}
				fmt.Fprintf(&b, "    Evidence: %s\n", e.Detail)
			}
		}
		b.WriteString("\n")
	}
	failed, unmeasured := out.Failed(), out.NotMeasurable()
	switch {
	case out.Green():
		b.WriteString("GREEN: every check passed. Well done.\n")
		_, err := io.WriteString(w, b.String())
		return err
	case len(failed) == 0 && len(unmeasured) > 0:
		// Nothing failed, but not everything was judged: no hint (the code
		// may be right or wrong), only what to give so the checks can look.
		fmt.Fprintf(&b, "NOT MEASURABLE: %d check(s) could not look: %s. A check that cannot look is never a pass; do what each one says above and check again.\n",
			len(unmeasured), strings.Join(unmeasured, ", "))
		_, err := io.WriteString(w, b.String())
		return err
	case len(failed) == 0:
		b.WriteString("NO VERDICT: the suite judged nothing (a scenario without checks).\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	if len(hints) > 0 {
		n := min(max(hintLevel, 1), len(hints))
		fmt.Fprintf(&b, "Hint %d of %d: %s\n", n, len(hints), hints[n-1])
		if n < len(hints) {
			b.WriteString("(Run check again for a stronger hint.)\n")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "RED: %d check(s) failed: %s", len(failed), strings.Join(failed, ", "))
	if len(unmeasured) > 0 {
		fmt.Fprintf(&b, "; %d not measurable: %s", len(unmeasured), strings.Join(unmeasured, ", "))
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}
