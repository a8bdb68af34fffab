package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionText is what --version prints: the module path and version, the
// VCS revision the binary was built from (with "+modified" when the tree
// had uncommitted changes) and the Go version, from the build info Go
// embeds. A binary built with -buildvcs=false (or outside a checkout) says
// its revision is unknown.
func versionText(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return fmt.Sprintf("bidikit (no build information) %s", runtime.Version())
	}
	version := info.Main.Version
	if version == "" {
		version = "(devel)"
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	rev := "revision unknown (built without VCS stamping)"
	if r := settings["vcs.revision"]; r != "" {
		rev = "revision " + r
		if settings["vcs.modified"] == "true" {
			rev += "+modified"
		}
		if t := settings["vcs.time"]; t != "" {
			rev += " (" + t + ")"
		}
	}
	path := info.Main.Path
	if path == "" {
		path = strings.TrimSuffix(info.Path, "/cmd/bidikit")
	}
	return fmt.Sprintf("%s %s, %s, %s", path, version, rev, info.GoVersion)
}

func init() {
	info, ok := debug.ReadBuildInfo()
	rootCmd.Version = versionText(info, ok)
	rootCmd.SetVersionTemplate("bidikit {{.Version}}\n")
}
