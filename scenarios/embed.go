// Package scenarios embeds the smoke suite so that `bidikit run` with no
// arguments works from any directory, not only from a checkout.
package scenarios

import "embed"

// Smoke holds smoke/*.yaml: a short suite (under a minute) over chat, collab
// and game against the reference server.
//
//go:embed smoke/*.yaml
var Smoke embed.FS

// SmokeDir is the smoke suite's folder, relative to the repository root and
// within Smoke.
const SmokeDir = "smoke"
