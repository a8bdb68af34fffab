package protocol

// WithoutFastPath returns a copy of m whose expressions all run in CEL: the
// tests compare it with m to show that fastPath changes no result.
func WithoutFastPath(m *Mapping) *Mapping {
	c := *m
	c.rules = make([]*rule, len(m.rules))
	for i, r := range m.rules {
		rc := *r
		rc.whenFast, rc.eachFast = nil, nil
		rc.fields = append([]fieldProgram(nil), r.fields...)
		for j := range rc.fields {
			rc.fields[j].fast = nil
		}
		c.rules[i] = &rc
	}
	return &c
}

// FastPaths counts the expressions of m that fastPath evaluates (rule
// conditions and fields), and all of them.
func FastPaths(m *Mapping) (fast, all int) {
	for _, r := range m.rules {
		all++
		if r.whenFast != nil {
			fast++
		}
		if r.each != nil {
			all++
			if r.eachFast != nil {
				fast++
			}
		}
		for _, f := range r.fields {
			all++
			if f.fast != nil {
				fast++
			}
		}
	}
	return fast, all
}
