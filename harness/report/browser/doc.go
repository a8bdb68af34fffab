// Package browser holds the test that opens bidikit's HTML report in a real
// browser (headless Chromium driven by github.com/chromedp/chromedp): a short
// scenario runs through the real engine against the in-process reference
// server, its report is rendered, and the test asserts what a person would
// see — per-role lines, markers on the time axes with their evidence, no
// console error, nothing fetched from the network — and saves a screenshot.
//
// It has no code of its own: chromedp is a test dependency of this package
// only, so it is never linked into cmd/bidikit. Chromium must be installed
// (Debian: apt-get install -y chromium); the test fails, saying so, when it
// is not. BIDIKIT_CHROMIUM names another Chrome or Chromium binary;
// BIDIKIT_ARTIFACTS a directory for the report and screenshot (else a new
// temporary directory, kept and printed).
package browser
