package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/nsbind/nsbind/internal/helper"
	"github.com/nsbind/nsbind/nsutil"
)

// Exit statuses of nsbind's own failures; otherwise nsbind exits with the
// server's status.
const (
	exitFailed      = 125 // nsbind failed before the server started
	exitCannotRun   = 126 // the command was found but cannot be run
	exitNotFound    = 127 // the command was not found
	exitUnsupported = 125
)

const version = "0.1.0"

func main() {
	// Descriptors: Go's runtime has already raised this process's soft
	// RLIMIT_NOFILE to the hard limit (less one), in every role, so a busy
	// relay may use all the user allows; and it restores the original soft
	// limit in the programs it starts, so the server keeps the user's
	// (TestFileLimit checks both). nsbind calls no setrlimit of its own: that
	// would hand the raised limit on to the server.
	if code, ok := playRole(os.Args); ok {
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// playRole plays the role of a process nsbind started itself: the helper
// inside the namespaces, the exec step that becomes the server, or nsbind
// doctor's probe. nsbind re-executes itself with the role as argv[0]
// (nsutil.RoleInit...), which nothing in the user's environment can set;
// any other argv[0] is the CLI (ok false). The helper then also needs its
// control channel on descriptor 3 and its configuration as the first
// message there.
func playRole(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case nsutil.RoleInit:
		return helper.Main(), true
	case nsutil.RoleExec:
		return helper.ExecMain(args[1:]), true
	case nsutil.RoleProbe:
		return probeMain(), true
	}
	return 0, false
}

const usage = `nsbind runs a server that wants a privileged port (80, 443, 22, 53...) without
root. The server starts in a new user and network namespace, where it may bind
any port; nsbind listens on the host port and moves the traffic in.

Usage:
  nsbind run [flags] [--] COMMAND [ARG...]   run COMMAND, publishing its ports
  nsbind ps [--json]                         list the running instances (runs)
  nsbind port NAME add|rm|ls [SPEC...]       publish, unpublish, list ports of a run
  nsbind exec [-it] NAME [--] COMMAND...     run COMMAND inside a run's namespaces
  nsbind stats NAME [--watch]                the counters of a run's ports, now
  nsbind stop NAME                           stop a run, as SIGTERM to its nsbind
  nsbind doctor [--json]                     check that this host lets nsbind run
  nsbind version                             print the version
  nsbind help                                show this help

Example:
  nsbind run -p 80:8080 python3 -m http.server 80
  curl http://127.0.0.1:8080/

Run 'nsbind run --help' for the flags of run, 'nsbind COMMAND --help' for
those of any command; 'nsbind run --name web ...' names a run for ps, port,
exec, stats and stop. When run fails to create its namespaces, 'nsbind
doctor' says why and what to do.
`

// run is the CLI: it dispatches on the subcommand and returns the exit
// status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitFailed
	}
	switch args[0] {
	case "run":
		return runCommand(args[1:], stdout, stderr)
	case "doctor":
		return doctorCommand(args[1:], stdout, stderr)
	case "ps":
		return psCommand(args[1:], stdout, stderr)
	case "port":
		return portCommand(args[1:], stdout, stderr)
	case "exec":
		return execCommand(args[1:], stdout, stderr)
	case "stats":
		return statsCommand(args[1:], stdout, stderr)
	case "stop":
		return stopCommand(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "nsbind %s%s (%s %s/%s)\n", version, revision(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "nsbind: unknown command %q\n\n%s", args[0], usage)
	return exitFailed
}

// revision is the VCS revision the binary was built from, when recorded.
func revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "+" + s.Value[:12]
		}
	}
	return ""
}
