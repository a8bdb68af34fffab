package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// didYouMean is ` (did you mean "x"?)` for the candidate closest to word
// when one is close enough (edit distance at most 2, or a prefix), else "".
func didYouMean(word string, candidates []string) string {
	if best := closest(word, candidates); best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// closest is the candidate nearest to word by edit distance (ties: the
// first), when within 2 edits or when one is a prefix of the other; "" if
// none is.
func closest(word string, candidates []string) string {
	best, bestD := "", 3
	lw := strings.ToLower(word)
	for _, c := range candidates {
		lc := strings.ToLower(c)
		d := levenshtein(lw, lc)
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best != "" {
		return best
	}
	for _, c := range candidates {
		if len(word) >= 3 && (strings.HasPrefix(strings.ToLower(c), lw) || strings.HasPrefix(lw, strings.ToLower(c))) {
			return c
		}
	}
	return ""
}

// levenshtein is the edit distance between a and b (bytes).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// unknownFlagRE finds the flag name in pflag's "unknown flag: --foo" and
// "unknown shorthand flag: 'x' in -x".
var unknownFlagRE = regexp.MustCompile(`^unknown flag: --([^\s=]+)`)

// flagError is the root's flag error function: every flag error is a usage
// error (exit 2); an unknown flag gets the nearest flag of the command as a
// suggestion.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if m := unknownFlagRE.FindStringSubmatch(msg); m != nil {
		var names []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				names = append(names, f.Name)
			}
		})
		if best := closest(m[1], names); best != "" {
			msg += fmt.Sprintf("\n\nDid you mean this?\n\t--%s", best)
		}
	}
	return usageError{fmt.Errorf("%s\nSee '%s --help'.", msg, cmd.CommandPath())}
}

// subcommandsOnly makes a parent command (one that only groups
// subcommands) refuse an argument that names none of them: a usage error
// with cobra's suggestions, instead of printing help and exiting 0.
func subcommandsOnly(cmd *cobra.Command) {
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], c.CommandPath())
		if c.SuggestionsMinimumDistance <= 0 {
			c.SuggestionsMinimumDistance = 2 // cobra sets it on the root only
		}
		if s := c.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		var names []string
		for _, sub := range c.Commands() {
			if sub.IsAvailableCommand() {
				names = append(names, sub.Name())
			}
		}
		slices.Sort(names)
		return usageError{fmt.Errorf("%s\nCommands: %s. See '%s --help'.", msg, strings.Join(names, ", "), c.CommandPath())}
	}
	if cmd.RunE == nil && cmd.Run == nil {
		cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	}
}
