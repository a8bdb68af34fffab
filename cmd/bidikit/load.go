package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bidikit/bidikit/harness/scenario"
	"github.com/bidikit/bidikit/scenarios"
)

// builtinPrefix marks the File of scenarios read from the binary's own copy.
const builtinPrefix = "(built-in) "

// parseSets reads the --set arguments; a malformed one is a usage error.
func parseSets(args []string) ([]scenario.Override, error) {
	var out []scenario.Override
	for _, a := range args {
		o, err := scenario.ParseOverride(a)
		if err != nil {
			return nil, usageError{err}
		}
		out = append(out, o)
	}
	return out, nil
}

// loadScenarios reads args, or the smoke suite when there are none: from
// ./scenarios/smoke when it exists, else the copy embedded in the binary.
// Every scenario gets the overrides (--set); its Source is the YAML it was
// decoded from (its file, with the overrides in it), for --raw-out.
func loadScenarios(args []string, sets []scenario.Override) (scs []*scenario.Scenario, err error) {
	if len(args) == 0 {
		dir := filepath.Join("scenarios", scenarios.SmokeDir)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			args = []string{dir}
		}
	}
	var errs []error
	if len(args) == 0 {
		entries, err := fs.ReadDir(scenarios.Smoke, scenarios.SmokeDir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
				continue
			}
			name := path.Join(scenarios.SmokeDir, e.Name())
			data, err := fs.ReadFile(scenarios.Smoke, name)
			if err != nil {
				return nil, err
			}
			s, err := scenario.Apply(builtinPrefix+name, data, sets)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			scs = append(scs, s)
		}
		return scs, errors.Join(errs...)
	}
	// Load finds the files, checks each as written and that names are
	// unique; then each is decoded once more from its source with the
	// overrides in it.
	files, err := scenario.Load(args...)
	if err != nil {
		return nil, err
	}
	if len(sets) == 0 {
		return files, nil
	}
	for _, f := range files {
		s, err := scenario.Apply(f.File, f.Source, sets)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		scs = append(scs, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	seen := map[string]string{}
	for _, s := range scs {
		if prev, dup := seen[s.Name]; dup {
			return nil, fmt.Errorf("scenario name %q is used by %s and %s (after --set): names must be unique", s.Name, prev, s.File)
		}
		seen[s.Name] = s.File
	}
	return scs, nil
}
