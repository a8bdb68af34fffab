package workshop

// WithoutAdmin exposes withoutAdmin to the external tests.
var WithoutAdmin = withoutAdmin
