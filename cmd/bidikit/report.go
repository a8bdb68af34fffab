package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bidikit/bidikit/harness/shard"
)

func init() { rootCmd.AddCommand(newReportCmd()) }

// newReportCmd builds `bidikit report`, the parent of report subcommands.
func newReportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Build reports from raw results (sharded runs)",
	}
	cmd.AddCommand(newReportMergeCmd())
	subcommandsOnly(cmd)
	return cmd
}

// newReportMergeCmd builds `bidikit report merge`: read every shard's raw
// results, judge the union, render the reports, map the outcome to the exit
// code.
func newReportMergeCmd() *cobra.Command {
	var (
		reports reportFlags
		quiet   bool
	)
	cmd := &cobra.Command{
		Use:   "merge SHARD-FILE...",
		Short: "Merge the raw results of every shard of a run into one report",
		Long: `merge reads the --raw-out files of every shard of one sharded run
(bidikit run --shard i/n --raw-out FILE) and reports the run as one:

  - latency percentiles from the shards' HDR histograms merged (exact);
  - counts, errors and the timeline from the union of the shards' events;
  - every check rebuilt from the scenario embedded in the files and fed the
    union of the events, interleaved by time (shards aligned by their
    wall-clock start);
  - checks that read the server themselves (leaks) cannot be re-run: each
    shard's verdict is kept and the worst wins; health questions (fairness,
    status-codes) are answered from what the shards recorded.

Every shard of the run must be given, once each, with the same scenarios,
seed and shard count.

` + reportHelp + `

Exit status: 0 every check passed, 1 a check failed or was not measurable, or
a shard's scenario could not run, 2 bad usage or raw files that are not the
shards of one run (missing, duplicate or mismatched shards, corrupt files).`,
		Example: `  bidikit report merge shard-0.raw shard-1.raw shard-2.raw
  bidikit report merge /results/*.raw --report junit=report.xml --report markdown=summary.md`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			outs, err := reports.outputs()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			merged, err := shard.Merge(ctx, args...)
			if err != nil {
				if ctx.Err() != nil {
					return err
				}
				return usageError{err}
			}
			run := shard.Report(merged)
			sink := reportSink{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), quiet: quiet, getenv: os.Getenv}
			if err := sink.write(outs, run); err != nil {
				return err
			}
			if !run.OK() { // a failed or not-measurable check, or a scenario not run
				return errChecksFailed
			}
			return nil
		},
	}
	fl := cmd.Flags()
	reports.register(fl)
	fl.BoolVar(&quiet, "quiet", false, "no text summary on the console beside the reports (text to stdout stays the default report)")
	return cmd
}
