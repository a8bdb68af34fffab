package h2attack

// Resolve exposes resolve to the external tests.
var Resolve = resolve
