// Command bidikit tests and load-generates gRPC bidirectional-streaming
// services. Each subcommand lives in its own file and adds itself to the root
// command in init; this file is only the root and the exit-code policy.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes shared by every subcommand.
const (
	exitOK     = 0
	exitFailed = 1 // a check failed
	exitUsage  = 2 // bad usage, bad flags, bad scenario file
)

// usageError marks errors that exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns an error that makes bidikit exit with status 2.
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errChecksFailed marks a run that worked but whose checks failed (exit 1); the
// report has already been printed.
var errChecksFailed = errors.New("one or more checks failed")

var rootCmd = &cobra.Command{
	Use:   "bidikit",
	Short: "Test and load-generate gRPC bidirectional-streaming services",
	Long: `bidikit pairs a reference server (chat, collaborative editing, game sync)
with a scenario harness that drives thousands of real gRPC clients with
injected faults and returns verdicts with evidence.`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func main() {
	rootCmd.SetFlagErrorFunc(flagError)
	err := rootCmd.Execute()
	os.Exit(exitCode(err))
}

// exitCode maps a command's error to the process exit status and prints it.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errChecksFailed) {
		return exitFailed
	}
	fmt.Fprintln(os.Stderr, "bidikit:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	// cobra's own unknown-command and argument-count errors are usage errors.
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires ", "invalid argument"} {
		if strings.HasPrefix(err.Error(), prefix) {
			if prefix == "unknown command" {
				fmt.Fprintln(os.Stderr, "Run 'bidikit --help' for the commands.")
			}
			return exitUsage
		}
	}
	return exitFailed
}
