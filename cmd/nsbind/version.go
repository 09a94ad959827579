package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is nsbind's release number. The build info adds which module
// version and revision a binary was built from (buildVersion).
const version = "0.1.0"

// buildVersion is what nsbind version says about the binary.
type buildVersion struct {
	Version string `json:"version"`
	// Module and ModuleVersion are the main module's path and version as
	// the build recorded them: a tag for go install ...@v0.1.0, a
	// pseudo-version for a build in a checkout (Go 1.24 and later), or
	// "(devel)".
	Module        string `json:"module,omitempty"`
	ModuleVersion string `json:"module_version,omitempty"`
	// Revision, Time and Modified are the VCS revision, its commit time
	// and whether the tree had changes: recorded only when the build ran
	// in a checkout with -buildvcs (scripts/release.sh and scripts/test.sh
	// ask for it; go install from the module proxy has no checkout).
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

// readBuildVersion is this binary's buildVersion.
func readBuildVersion() buildVersion {
	info, _ := debug.ReadBuildInfo()
	return versionFrom(info)
}

// versionFrom is the buildVersion of a binary with build info info (nil
// when it has none).
func versionFrom(info *debug.BuildInfo) buildVersion {
	v := buildVersion{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if info == nil {
		return v
	}
	v.Module, v.ModuleVersion = info.Main.Path, info.Main.Version
	if info.GoVersion != "" {
		v.Go = info.GoVersion
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one line of nsbind version, -v and --version, e.g.
// "nsbind 0.1.0 (github.com/nsbind/nsbind v0.1.0, revision 9660089c1a2b+dirty, go1.26.0 linux/amd64)".
func (v buildVersion) String() string {
	var parts []string
	if v.Module != "" && v.ModuleVersion != "" {
		parts = append(parts, v.Module+" "+v.ModuleVersion)
	}
	if v.Revision != "" {
		rev := v.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if v.Modified {
			rev += "+dirty"
		}
		parts = append(parts, "revision "+rev)
	}
	parts = append(parts, v.Go+" "+v.Platform)
	return fmt.Sprintf("nsbind %s (%s)", v.Version, strings.Join(parts, ", "))
}

// printVersion is nsbind version: the line, or with asJSON the fields as
// one JSON object.
func printVersion(w io.Writer, asJSON bool) {
	v := readBuildVersion()
	if !asJSON {
		fmt.Fprintln(w, v)
		return
	}
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(w, "%s\n", b)
}
