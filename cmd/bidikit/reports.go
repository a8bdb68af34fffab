package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/bidikit/bidikit/harness/report"
	"github.com/bidikit/bidikit/harness/result"
)

// stepSummaryEnv names the file GitHub Actions shows as the job summary; a
// markdown report is also appended to it when it is set.
const stepSummaryEnv = "GITHUB_STEP_SUMMARY"

// reportFlags holds --report FORMAT[=PATH] and the older --out FILE in
// command-line order, so that an --out belongs to the --report right
// before it. Both flags' values append to args; outputs reads them once
// the flags are parsed. One reportFlags belongs to one command.
type reportFlags struct {
	args []reportArg
}

// reportArg is one --report (out false) or --out (out true) as given.
type reportArg struct {
	out   bool
	value string
}

// reportValue is the pflag.Value of --report (out false) or --out.
type reportValue struct {
	f   *reportFlags
	out bool
}

func (v reportValue) String() string { return "" }
func (v reportValue) Type() string {
	if v.out {
		return "FILE"
	}
	return "FORMAT[=PATH]"
}
func (v reportValue) Set(s string) error {
	v.f.args = append(v.f.args, reportArg{out: v.out, value: s})
	return nil
}

// register adds --report and --out to fs.
func (f *reportFlags) register(fs *pflag.FlagSet) {
	fs.Var(reportValue{f: f}, "report", "report FORMAT ("+strings.Join(report.Formats(), ", ")+") to PATH, or to stdout without =PATH or with =-; repeatable, e.g. --report junit=report.xml --report markdown=summary.md")
	fs.Var(reportValue{f: f, out: true}, "out", "older form: the file of the --report just before it (\"-\" is stdout); prefer --report FORMAT=PATH")
}

// reportHelp is the Reports paragraph of run's and merge's help.
const reportHelp = `Reports: --report FORMAT[=PATH], repeatable; FORMAT is text, json, junit,
html or markdown; PATH "-" or no =PATH is stdout (at most one report there).
The older pair form --report junit --out report.xml still works: an --out
names the file of the --report right before it; any other --out (first, twice
in a row, after a FORMAT=PATH) is a usage error, as are two reports to stdout
or two to one file. Default: text to stdout. Whatever goes to files, the text
summary is also shown on the console (stdout, or stderr when a report goes to
stdout) unless --quiet. The markdown report (for CI job summaries and PR
comments) is also appended to $GITHUB_STEP_SUMMARY when that is set.`

// output is one report destination.
type output struct {
	format string
	path   string // "" or "-" = stdout
}

func (o output) stdout() bool { return o.path == "" || o.path == "-" }

// name is how messages name o: "--report junit=r.xml".
func (o output) name() string {
	if o.stdout() {
		return "--report " + o.format
	}
	return "--report " + o.format + "=" + o.path
}

// outputs reads the flags into destinations; every ambiguous combination
// is a usage error that says what to write instead. No flag at all is text
// to stdout.
func (f *reportFlags) outputs() ([]output, error) {
	var outs []output
	named := []bool{} // named[i]: outs[i] got its path from =PATH or an --out
	prevOut := false  // the previous argument was an --out
	for _, a := range f.args {
		if !a.out {
			format, path, hasPath := strings.Cut(a.value, "=")
			format = strings.ToLower(strings.TrimSpace(format))
			if err := knownFormat(format); err != nil {
				return nil, err
			}
			if hasPath && strings.TrimSpace(path) == "" {
				return nil, usagef("--report %s=: the path is empty; write --report %s=FILE, or --report %s=- for stdout", format, format, format)
			}
			outs = append(outs, output{format: format, path: path})
			named = append(named, hasPath)
			prevOut = false
			continue
		}
		last := len(outs) - 1
		switch {
		case last < 0:
			return nil, usagef("--out %s comes before any --report: write --report FORMAT=%s", a.value, a.value)
		case prevOut:
			return nil, usagef("--out %s follows --out %s: an --out names the file of the one --report right before it; write --report FORMAT=FILE for each report", a.value, outs[last].path)
		case named[last]:
			return nil, usagef("--out %s follows %s, which names its own destination: drop one of them", a.value, outs[last].name())
		}
		prevOut = true
		if strings.TrimSpace(a.value) == "" {
			return nil, usagef("--out is empty: give a file, or - for stdout")
		}
		outs[last].path = a.value
		named[last] = true
	}
	if len(outs) == 0 {
		return []output{{format: "text"}}, nil
	}
	var toStdout []string
	byPath := map[string]output{}
	for _, o := range outs {
		if o.stdout() {
			toStdout = append(toStdout, o.format)
			continue
		}
		key := filepath.Clean(o.path)
		if prev, dup := byPath[key]; dup {
			return nil, usagef("%s and %s both write %s: give each report its own file", prev.name(), o.name(), o.path)
		}
		byPath[key] = o
	}
	if len(toStdout) > 1 {
		return nil, usagef("%d reports would go to stdout (%s): give all but one a file, e.g. --report %s=FILE",
			len(toStdout), strings.Join(toStdout, ", "), toStdout[1])
	}
	return outs, nil
}

// knownFormat is nil for a report format report.Write accepts, else a
// usage error listing them (with a guess when one is close).
func knownFormat(format string) error {
	for _, k := range report.Formats() {
		if k == format {
			return nil
		}
	}
	return usagef("--report %q: unknown format%s (known: %s)", format, didYouMean(format, report.Formats()), strings.Join(report.Formats(), ", "))
}

// reportSink is where the reports of one command go.
type reportSink struct {
	stdout, stderr io.Writer
	quiet          bool
	getenv         func(string) string
}

// write renders run once per output, then the console summary (the text
// report on stdout, or on stderr when a report took stdout) unless quiet
// or a text report is already on the console, then appends a markdown
// report to $GITHUB_STEP_SUMMARY when that is set.
func (k reportSink) write(outs []output, run *result.Run) error {
	stepSummary := ""
	if k.getenv != nil {
		stepSummary = k.getenv(stepSummaryEnv)
	}
	stdoutTaken, textShown, markdown := false, false, false
	for _, o := range outs {
		if o.format == "markdown" {
			markdown = true
		}
		if o.stdout() {
			stdoutTaken = true
			textShown = textShown || o.format == "text"
			if err := report.Write(k.stdout, o.format, run); err != nil {
				return fmt.Errorf("writing the %s report: %w", o.format, err)
			}
			continue
		}
		// The step summary file collects the step's summaries: add to it.
		appendTo := stepSummary != "" && o.format == "markdown" && samePath(o.path, stepSummary)
		if err := writeReportFile(o.path, o.format, run, appendTo); err != nil {
			return err
		}
		if appendTo {
			stepSummary = ""
		}
	}
	if !k.quiet && !textShown {
		w := k.stdout
		if stdoutTaken {
			w = k.stderr
		}
		if err := report.Write(w, "text", run); err != nil {
			return fmt.Errorf("writing the console summary: %w", err)
		}
	}
	if markdown && stepSummary != "" {
		if err := writeReportFile(stepSummary, "markdown", run, true); err != nil {
			return fmt.Errorf("$%s: %w", stepSummaryEnv, err)
		}
	}
	return nil
}

// writeReportFile renders run in format to path, created afresh or, with
// appendTo, added at its end.
func writeReportFile(path, format string, run *result.Run, appendTo bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appendTo {
		flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
	}
	file, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return fmt.Errorf("--report %s=%s: %w", format, path, err)
	}
	werr := report.Write(file, format, run)
	cerr := file.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("writing the %s report to %s: %w", format, path, err)
	}
	return nil
}

// samePath reports whether a and b name one file.
func samePath(a, b string) bool {
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	if err1 != nil || err2 != nil {
		return filepath.Clean(a) == filepath.Clean(b)
	}
	return aa == bb
}
