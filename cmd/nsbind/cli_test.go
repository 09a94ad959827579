package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/nsbind/nsbind/internal/helptext"
	"github.com/nsbind/nsbind/internal/manpage"
)

// runInProcess runs the CLI in this process, as main does, and returns its
// status, stdout and stderr. Only for runs that fail before anything
// starts: a flag, a spec or a command that is wrong.
func runInProcess(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// Acceptance: nsbind help COMMAND is nsbind COMMAND --help (and -h), on
// stdout with status 0.
func TestHelpOfACommand(t *testing.T) {
	for _, name := range []string{"run", "doctor", "version", "completion", "help"} {
		t.Run(name, func(t *testing.T) {
			code, want, stderr := runInProcess(t, name, "--help")
			if code != 0 || stderr != "" || !strings.HasPrefix(want, "Usage: nsbind "+name) {
				t.Fatalf("nsbind %s --help: exit %d, stdout %q, stderr %q", name, code, want, stderr)
			}
			for _, args := range [][]string{{"help", name}, {name, "-h"}} {
				code, got, stderr := runInProcess(t, args...)
				if code != 0 || stderr != "" || got != want {
					t.Errorf("nsbind %q: exit %d, stderr %q, stdout:\n%s\nwant nsbind %s --help:\n%s", args, code, stderr, got, name, want)
				}
			}
		})
	}
	code, want, _ := runInProcess(t, "--help")
	for _, args := range [][]string{{"help"}, {"-h"}} {
		if code2, got, _ := runInProcess(t, args...); code != 0 || code2 != 0 || got != want {
			t.Errorf("nsbind %q: exit %d, stdout:\n%s\nwant nsbind --help's:\n%s", args, code2, got, want)
		}
	}
	for _, name := range []string{"run", "doctor", "version", "completion", "help"} {
		if !strings.Contains(want, "\n  "+name+" ") {
			t.Errorf("nsbind --help does not list %s:\n%s", name, want)
		}
	}
}

// The help of run lists every flag without pflag's noise: a bool is just
// its name (no [=true|false]), a repeatable one no "stringArray".
func TestRunHelpFlags(t *testing.T) {
	_, out, _ := runInProcess(t, "run", "--help")
	for _, noise := range []string{"[=true|false]", "stringArray", "[=", "help for"} {
		if strings.Contains(out, noise) {
			t.Errorf("nsbind run --help shows %q:\n%s", noise, out)
		}
	}
	for _, want := range []string{"\n  -p, --publish SPEC ", "\n      --direct ", "\n      --ports-file FILE ", "\n  -h, --help "} {
		if !strings.Contains(out, want) {
			t.Errorf("nsbind run --help has no %q:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if len(l) > helptext.Width && !strings.HasPrefix(l, "  ") {
			t.Errorf("a line of %d characters: %q", len(l), l)
		}
	}
}

// Acceptance: -v, --version and version print the same line, with the
// version; version --json the same facts as JSON.
func TestVersionsAgree(t *testing.T) {
	_, want, _ := runInProcess(t, "version")
	if !strings.HasPrefix(want, "nsbind "+version+" (") || strings.Count(want, "\n") != 1 {
		t.Fatalf("nsbind version: %q", want)
	}
	for _, arg := range []string{"-v", "--version"} {
		if code, got, stderr := runInProcess(t, arg); code != 0 || got != want || stderr != "" {
			t.Errorf("nsbind %s: exit %d, stdout %q, stderr %q; want %q", arg, code, got, stderr, want)
		}
	}
	code, out, _ := runInProcess(t, "version", "--json")
	var v buildVersion
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version != version || v.Go == "" || v.String()+"\n" != want {
		t.Errorf("nsbind version --json: exit %d, %q (%v); want the facts of %q", code, out, err, want)
	}
}

// The line of nsbind version from the build info: the module version and
// the revision a build in a checkout records, what go install records.
func TestVersionFromBuildInfo(t *testing.T) {
	tests := []struct {
		name string
		info *debug.BuildInfo
		want string // after "nsbind VERSION (", before the Go version
	}{
		{"no build info", nil, ""},
		{"go install of a tag", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/nsbind/nsbind", Version: "v0.1.0"}},
			"github.com/nsbind/nsbind v0.1.0, "},
		{"checkout with changes", &debug.BuildInfo{GoVersion: "go1.26.0",
			Main: debug.Module{Path: "github.com/nsbind/nsbind", Version: "v0.0.0-20260101000000-0123456789ab+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
				{Key: "vcs.time", Value: "2026-01-01T00:00:00Z"}, {Key: "vcs.modified", Value: "true"}}},
			"github.com/nsbind/nsbind v0.0.0-20260101000000-0123456789ab+dirty, revision 0123456789ab+dirty, "},
		{"clean checkout", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/nsbind/nsbind", Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"}, {Key: "vcs.modified", Value: "false"}}},
			"github.com/nsbind/nsbind (devel), revision 0123456789ab, "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := versionFrom(tt.info)
			got := v.String()
			prefix := "nsbind " + version + " (" + tt.want
			if !strings.HasPrefix(got, prefix) || !strings.HasSuffix(got, v.Go+" "+v.Platform+")") {
				t.Errorf("got %q, want %q then the Go version", got, prefix)
			}
		})
	}
}

// Acceptance: arguments nsbind does not know are errors, status 125, with
// one line that says so and where the usage is.
func TestUnknownArguments(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"rn"}, "Did you mean this?\n"}, {[]string{"rn"}, "\trun\n"},
		{[]string{"--frobnicate"}, "unknown flag: --frobnicate"},
		{[]string{"version", "foo"}, `version takes no arguments, got ["foo"]`},
		{[]string{"version", "--jsn"}, "unknown flag: --jsn"},
		{[]string{"help", "frobnicate"}, `no help for "frobnicate"`},
		{[]string{"help", "run", "extra"}, `no help for "run extra"`},
		{[]string{"completion"}, "completion needs one shell of bash, zsh, fish"},
		{[]string{"completion", "tcsh"}, `got ["tcsh"]`},
		{[]string{"completion", "bash", "zsh"}, "completion needs one shell"},
		{[]string{"doctor", "now"}, `doctor takes no arguments, got ["now"]`},
		{[]string{"doctor", "--jsn"}, "unknown flag: --jsn"},
		{[]string{"run", "-x", "true"}, "unknown shorthand flag: 'x' in -x"},
	}
	for _, tt := range tests {
		code, stdout, stderr := runInProcess(t, tt.args...)
		if code != exitFailed || stdout != "" || !strings.Contains(stderr, tt.says) {
			t.Errorf("nsbind %q: exit %d, stdout %q, stderr %q; want 125 saying %q", tt.args, code, stdout, stderr, tt.says)
		}
		if tt.args != nil && (!strings.HasPrefix(stderr, "nsbind: ") || !strings.Contains(stderr, "--help' for usage.")) {
			t.Errorf("nsbind %q: stderr %q; want nsbind: ... and where the usage is", tt.args, stderr)
		}
	}
}

// Each shell's script is cobra's, for nsbind.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_nsbind", "zsh": "#compdef nsbind", "fish": "complete -c nsbind"} {
		code, out, stderr := runInProcess(t, "completion", shell)
		if code != 0 || stderr != "" || !strings.Contains(out, want) {
			t.Errorf("nsbind completion %s: exit %d, stderr %q, no %q in the script", shell, code, stderr, want)
		}
	}
}

// The values of the flags that take one of a few words complete to those
// words, through the command cobra's scripts call.
func TestFlagValueCompletion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"run", "--log-level", ""}, []string{"debug", "info", "warn", "error"}},
		{[]string{"run", "--net", ""}, []string{"relay", "veth"}},
		{[]string{"run", "--source-address", ""}, []string{"client", "loopback"}},
		{[]string{"run", "--proxy-protocol", ""}, []string{"v1", "v2"}},
		{[]string{"run", "-p", ""}, nil},
		{[]string{"run", "--to-host", ""}, nil},
		{[]string{"run", "--subnet", ""}, nil},
		{[]string{"r"}, []string{"run"}},
		{[]string{"run", "--pub"}, []string{"--publish"}},
		{[]string{"help", "d"}, []string{"doctor"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
	}
	for _, tt := range tests {
		code, out, stderr := runInProcess(t, append([]string{"__complete"}, tt.args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var got []string
		for _, l := range lines[:len(lines)-1] { // the last is the directive
			got = append(got, strings.SplitN(l, "\t", 2)[0])
		}
		directive := lines[len(lines)-1]
		if code != 0 || strings.Join(got, " ") != strings.Join(tt.want, " ") || (tt.want == nil && directive != ":4") {
			t.Errorf("completing nsbind %q: exit %d, %q (directive %s), stderr %q; want %q", tt.args, code, got, directive, stderr, tt.want)
		}
	}
}

// A command of selfParsedCommands gets its arguments as they are, its own
// --help for nsbind help NAME, and its line in the help and the man page.
func TestSelfParsedCommand(t *testing.T) {
	var got [][]string
	ps := func(args []string, stdout, stderr io.Writer) int {
		got = append(got, args)
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintln(stdout, "Usage: nsbind demo [--json]")
			return 0
		}
		return 3
	}
	exec := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		var status int
		root := newCLI(&stdout, &stderr, &status)
		addSelfParsed(root, []selfParsed{{"demo", "a command that parses its own arguments", "[--json]", ps}}, &stdout, &stderr, &status)
		root.SetArgs(args)
		if _, err := root.ExecuteC(); err != nil {
			return exitFailed, stdout.String(), err.Error()
		}
		return status, stdout.String(), stderr.String()
	}
	if code, _, stderr := exec("demo", "--json", "-x", "--", "a"); code != 3 || stderr != "" {
		t.Errorf("nsbind demo --json -x -- a: exit %d, stderr %q; want the command's 3", code, stderr)
	}
	for _, args := range [][]string{{"help", "demo"}, {"demo", "--help"}, {"demo", "-h"}} {
		if code, out, _ := exec(args...); code != 0 || out != "Usage: nsbind demo [--json]\n" {
			t.Errorf("nsbind %q: exit %d, stdout %q; want the command's help", args, code, out)
		}
	}
	want := [][]string{{"--json", "-x", "--", "a"}, {"--help"}, {"--help"}, {"-h"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the command got %q, want %q", got, want)
	}
	if _, out, _ := exec("--help"); !strings.Contains(out, "a command that parses its own arguments\n") {
		t.Errorf("nsbind --help does not list demo:\n%s", out)
	}
	var status int
	root := newCLI(nil, nil, &status)
	addSelfParsed(root, []selfParsed{{"demo", "a command that parses its own arguments", "[--json]", ps}}, nil, nil, &status)
	if man := manpage.Page(root, version); !strings.Contains(man, ".SS ps\n\\fBnsbind ps\\fR [\\-\\-json]\n") || !strings.Contains(man, `\fBnsbind ps \-\-help\fR`) {
		t.Errorf("the man page has no section for ps:\n%s", man)
	}
}
