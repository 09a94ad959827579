package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/nsbind/nsbind/internal/helptext"
	"github.com/nsbind/nsbind/internal/hints"
	"github.com/nsbind/nsbind/internal/instance"
	"github.com/nsbind/nsbind/internal/instancecli"
)

// The instance commands: nsbind ps, port, stats, stop and exec talk to a
// running nsbind run over its control socket. Here are their flags and
// the checks of their arguments; internal/instancecli connects, asks and
// prints the answer.

// instanceOutput is where the instance commands write, and how they word
// an error (internal/hints).
func instanceOutput(stdout, stderr io.Writer) instancecli.Output {
	return instancecli.Output{Stdout: stdout, Stderr: stderr, Describe: hints.Describe}
}

// instanceFlags is the flag set of one instance command, with --help.
func instanceFlags(name, usage string, stdout, stderr io.Writer) (*pflag.FlagSet, *bool) {
	fs := pflag.NewFlagSet("nsbind "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	help := fs.BoolP("help", "h", false, "show this help")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprint(stderr, helptext.FlagHelp(fs))
	}
	return fs, help
}

// parseInstanceFlags parses args; done says the command is over (help, or
// a bad flag), with code.
func parseInstanceFlags(fs *pflag.FlagSet, help *bool, usage string, args []string, stdout, stderr io.Writer) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0, true
		}
		fmt.Fprintf(stderr, "nsbind: %v\nRun '%s --help' for usage.\n", err, fs.Name())
		return exitFailed, true
	}
	if *help {
		fmt.Fprint(stdout, usage)
		fmt.Fprint(stdout, helptext.FlagHelp(fs))
		return 0, true
	}
	return 0, false
}

const psUsage = `Usage: nsbind ps [--json]

Lists your running nsbind instances (root: everyone's): name, pid of nsbind,
uptime, command, and each published host socket with the port inside and its
path (native: the server accepts on the host socket itself; relay: nsbind
relays to it). The control sockets live in $XDG_RUNTIME_DIR/nsbind, or in
/tmp/nsbind-UID; a stale one of a run that died is removed.

Flags:
`

func psCommand(args []string, stdout, stderr io.Writer) int {
	fs, help := instanceFlags("ps", psUsage, stdout, stderr)
	asJSON := fs.Bool("json", false, "print the instances as a JSON array, for scripts")
	if code, done := parseInstanceFlags(fs, help, psUsage, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "nsbind: ps takes no arguments, got %q\n", fs.Args())
		return exitFailed
	}
	return instancecli.PS(instanceOutput(stdout, stderr), *asJSON)
}

const portUsage = `Usage: nsbind port NAME add SPEC...
       nsbind port NAME rm SPEC...
       nsbind port NAME ls

Publishes (add) and unpublishes (rm) ports of the running instance NAME, with
the -p grammar and the checks of nsbind run: a busy host port fails with the
same message, and then nothing changes. An added port is relayed to the
server's port inside. rm closes the host socket: nsbind stops accepting on
it, connections in flight finish. Only ports added with add can be removed.
ls lists every published host socket.

Flags:
`

func portCommand(args []string, stdout, stderr io.Writer) int {
	fs, help := instanceFlags("port", portUsage, stdout, stderr)
	asJSON := fs.Bool("json", false, "print the sockets as a JSON array, for scripts")
	if code, done := parseInstanceFlags(fs, help, portUsage, args, stdout, stderr); done {
		return code
	}
	rest := fs.Args()
	if len(rest) < 2 {
		fmt.Fprintf(stderr, "nsbind: port needs an instance and add, rm or ls\n%s", withoutFlags(portUsage))
		return exitFailed
	}
	name, action, specs := rest[0], rest[1], rest[2:]
	switch action {
	case "add", "rm":
		if len(specs) == 0 {
			fmt.Fprintf(stderr, "nsbind: port %s %s needs at least one port spec, e.g. nsbind port %s %s 81:8081\n", name, action, name, action)
			return exitFailed
		}
	case "ls":
		if len(specs) > 0 {
			fmt.Fprintf(stderr, "nsbind: port %s ls takes no specs, got %q\n", name, specs)
			return exitFailed
		}
	default:
		fmt.Fprintf(stderr, "nsbind: unknown port action %q: use add, rm or ls\n", action)
		return exitFailed
	}
	return instancecli.Port(instanceOutput(stdout, stderr), name, action, specs, *asJSON)
}

const statsUsage = `Usage: nsbind stats NAME [--watch]

Prints the counters of --stats of the running instance NAME, now: per
published host socket, connections (UDP: flows) opened, open now and failed,
and bytes in and out. A host socket the server accepts on itself (native)
counts only what nsbind relays for it (nsbind exec NAME curl localhost:80):
nsbind does not see the connections the server accepts.

Flags:
`

func statsCommand(args []string, stdout, stderr io.Writer) int {
	fs, help := instanceFlags("stats", statsUsage, stdout, stderr)
	watch := fs.BoolP("watch", "w", false, "print the counters again every --interval until interrupted or the instance ends")
	interval := fs.Duration("interval", time.Second, "with --watch, how often")
	asJSON := fs.Bool("json", false, "print the counters as JSON (one array per line with --watch)")
	if code, done := parseInstanceFlags(fs, help, statsUsage, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "nsbind: stats needs one instance name\n%s", withoutFlags(statsUsage))
		return exitFailed
	}
	if *interval <= 0 {
		fmt.Fprintf(stderr, "nsbind: --interval must be positive\n")
		return exitFailed
	}
	return instancecli.Stats(instanceOutput(stdout, stderr), fs.Arg(0), instancecli.StatsOptions{Watch: *watch, Interval: *interval, JSON: *asJSON})
}

const stopUsage = `Usage: nsbind stop NAME

Stops the running instance NAME as SIGTERM to its nsbind does: the server gets
SIGTERM, and the run ends when it has. Waits until it has, at most --timeout.

Flags:
`

func stopCommand(args []string, stdout, stderr io.Writer) int {
	fs, help := instanceFlags("stop", stopUsage, stdout, stderr)
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the run to end")
	if code, done := parseInstanceFlags(fs, help, stopUsage, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "nsbind: stop needs one instance name\n%s", withoutFlags(stopUsage))
		return exitFailed
	}
	return instancecli.Stop(instanceOutput(stdout, stderr), fs.Arg(0), *timeout)
}

const execUsage = `Usage: nsbind exec [-it] NAME [--] COMMAND [ARG...]

Runs COMMAND inside the running instance NAME: in its network, PID and mount
namespaces, as the same user and with the same restrictions as its server (no
capabilities unless the run has --root, no_new_privs). COMMAND gets this
nsbind's stdin, stdout and stderr, and nsbind exits with its status (128+N
when signal N killed it). With -t COMMAND gets a terminal of its own, e.g.
'nsbind exec -it web bash'. Flags end at NAME.

  nsbind exec web curl -s localhost:80
  nsbind exec web ss -ltn

Flags:
`

func execCommand(args []string, stdout, stderr io.Writer) int {
	fs, help := instanceFlags("exec", execUsage, stdout, stderr)
	// Flags end at NAME: the command's are its own.
	fs.SetInterspersed(false)
	tty := fs.BoolP("tty", "t", false, "give COMMAND a terminal (a pseudo-terminal nsbind copies to and from this one)")
	fs.BoolP("interactive", "i", false, "pass stdin (it always is; accepted for the habit of -it)")
	env := fs.StringArrayP("env", "e", nil, "add `NAME=VALUE` to COMMAND's environment (repeatable)")
	dir := fs.StringP("workdir", "w", "", "the working `DIR` of COMMAND inside (default: the server's)")
	if code, done := parseInstanceFlags(fs, help, execUsage, args, stdout, stderr); done {
		return code
	}
	rest := fs.Args()
	if len(rest) > 1 && rest[1] == "--" {
		rest = append(rest[:1], rest[2:]...)
	}
	if len(rest) < 2 {
		fmt.Fprintf(stderr, "nsbind: exec needs an instance name and a command, e.g. nsbind exec web ss -ltn\n")
		return exitFailed
	}
	for _, kv := range *env {
		if !strings.Contains(kv, "=") {
			fmt.Fprintf(stderr, "nsbind: --env %q: use NAME=VALUE\n", kv)
			return exitFailed
		}
	}
	req := instance.ExecRequest{Args: rest[1:], Env: *env, Dir: *dir, TTY: *tty}
	return instancecli.Exec(instanceOutput(stdout, stderr), rest[0], req)
}

// withoutFlags is a command's usage for an error: without its "Flags:"
// heading, which only the help fills in.
func withoutFlags(usage string) string {
	return strings.TrimSuffix(usage, "Flags:\n") + "nsbind " + strings.Fields(usage)[2] + " --help lists the flags.\n"
}
