package scenario

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Load reads scenarios from files and folders. A folder contributes every
// *.yaml and *.yml file inside it, recursively (skipping hidden folders), in
// sorted order; a folder with none is an error naming it. A file named twice
// is read once. All files are parsed and every problem is returned (joined);
// on any problem the result is nil. Scenario names must be unique across the
// loaded files.
func Load(paths ...string) ([]*Scenario, error) {
	if len(paths) == 0 {
		return nil, errors.New("no scenario files or folders given")
	}
	var files []string
	seen := map[string]bool{}
	var errs []error
	add := func(f string) {
		abs, err := filepath.Abs(f)
		if err != nil {
			abs = f
		}
		if !seen[abs] {
			seen[abs] = true
			files = append(files, f)
		}
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario path %s: %w", p, err))
			continue
		}
		if !st.IsDir() {
			add(p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario folder %s: %w", p, err))
			continue
		}
		if len(found) == 0 {
			errs = append(errs, fmt.Errorf("scenario folder %s: no scenario files (*.yaml, *.yml) in it", p))
			continue
		}
		sort.Strings(found)
		for _, f := range found {
			add(f)
		}
	}
	var out []*Scenario
	byName := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("scenario file %s: %w", f, err))
			continue
		}
		s, err := Parse(f, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, dup := byName[s.Name]; dup {
			errs = append(errs, &Error{File: f, Line: 1, Col: 1, Path: "name",
				Msg: fmt.Sprintf("scenario name %q is already used by %s; names must be unique", s.Name, prev)})
			continue
		}
		byName[s.Name] = f
		out = append(out, s)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
