package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nsbind/nsbind/internal/helptext"
)

// The command line is one cobra command tree (newCLI): it parses the
// arguments and dispatches, and the same definitions are each command's
// help, the shell completion (nsbind completion) and the man page
// (internal/manpage, docs/nsbind.1). Every command returns its exit status
// through the tree's status; an error cobra or a command returns is
// nsbind's own failure, status 125.

// docs/nsbind.1 is manpage.Page of the command tree; TestManPage fails when
// it is stale, and with -update writes it (scripts/manpage.sh).
//go:generate go test -run TestManPage -args -update

// run is the CLI: it runs the command args names and returns the exit
// status.
func run(args []string, stdout, stderr io.Writer) int {
	var status int
	root := newCLI(stdout, stderr, &status)
	if args == nil {
		args = []string{} // nil would make cobra read os.Args
	}
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitFailed
	}
	return status
}

// selfParsed is a command that parses its own arguments: cobra hands it
// them as they are (no flag parsing, no completion of its flags), and
// "nsbind help NAME" runs it with --help, so its help is its own.
type selfParsed struct {
	name  string
	short string // one line for the list of commands
	usage string // what follows the name in its synopsis, e.g. "[--json]"
	run   func(args []string, stdout, stderr io.Writer) int
}

// selfParsedCommands are the commands of selfParsed: one line each.
func selfParsedCommands() []selfParsed {
	return []selfParsed{
		{"ps", "list the running instances (runs)", "[--json]", psCommand},
		{"port", "publish, unpublish or list ports of a run", "NAME add|rm|ls [SPEC...]", portCommand},
		{"exec", "run COMMAND inside a run's namespaces", "[-it] NAME [--] COMMAND...", execCommand},
		{"stats", "the counters of a run's published ports", "NAME [--watch]", statsCommand},
		{"stop", "stop a run, as SIGTERM to its nsbind", "NAME", stopCommand},
	}
}

const rootLong = `nsbind runs a server that wants a privileged port (80, 443, 22, 53...) without
root. The server starts in a new user and network namespace, where it may bind
any port; nsbind listens on the host port and moves the traffic in.`

const rootExample = `  nsbind run -p 80:8080 python3 -m http.server 80
  curl http://127.0.0.1:8080/`

const rootFooter = `Run 'nsbind help COMMAND' or 'nsbind COMMAND --help' for a command's flags.
When run fails to create its namespaces, 'nsbind doctor' says why and what to do.`

// runLong is nsbind run's description in its help and the man page.
// Paragraphs are flush left; an indented block is shown as it is.
const runLong = `Runs COMMAND in a new user and network namespace, where it may bind any port
(80, 443, 53...) with no privilege, and publishes its ports on the host.
Flags end at COMMAND: 'nsbind run -p 80:8080 ./server -v' passes -v to the
server; -- ends them too.

-p 80:8080 publishes the server's port 80 (inside) on host port 8080
(127.0.0.1 and [::1]). The forms of
-p NSPORT[-END][:[HOSTIP:]HOSTPORT[-END]][/PROTO]:

  80                     inside 80 <- host port 80 (needs a host that allows it)
  80:8080                inside 80 <- host 127.0.0.1:8080 and [::1]:8080
  80:0                   host port chosen by the kernel (printed on start)
  80:0.0.0.0:8080        every IPv4 address; 80:[::]:8080 every address, both families
  80:192.0.2.7:8080      one host address
  53:5353/udp            UDP (/tcp is the default)
  8000-8009:18000-18009  ranges of equal length, port by port

Started by systemd behind a .socket unit (LISTEN_FDS, LISTEN_PID is nsbind's),
nsbind serves the sockets it was given instead of binding its own: a -p takes
each socket of its protocol and host port (80:80 takes ListenStream=80), only
the one bound to its address if it names one (80:0.0.0.0:80), never with host
port 0. A socket no -p takes is an error before the server starts (status 125).
See README.md, "The real port 80 with systemd".

TCP ports take the native path: when the server binds its port, it gets the
host socket itself (both loopback families), accepts its clients with no relay
and sees their real addresses. --relay relays instead; UDP is relayed unless
--direct-udp.

Exit status: the server's; 128+N when it died of signal N; 125 when nsbind
failed before the server started; 126 when COMMAND cannot be run; 127 when it
is not found. A command that exits 0 leaving processes running (it went to
the background: nginx, apachectl start) is served until the last of them
exits; nsbind's signals go to all of them, and the status is that of the one
reaped last. Ctrl-Z stops nsbind's whole job, also under go run, bash -c or
make. go run turns any failure into 1: build nsbind (go build -o nsbind
./cmd/nsbind) to keep the status.`

const completionLong = `Prints the completion script of nsbind for the shell named. To load it into the
current shell, or at every start:

  bash:  source <(nsbind completion bash)
         nsbind completion bash > ~/.local/share/bash-completion/completions/nsbind
  zsh:   source <(nsbind completion zsh)
         nsbind completion zsh > "${fpath[1]}/_nsbind"
  fish:  nsbind completion fish | source
         nsbind completion fish > ~/.config/fish/completions/nsbind.fish

The script asks nsbind itself what to complete, so it follows the nsbind on
the PATH.`

// newCLI is the command tree of nsbind, writing to stdout and stderr; the
// command that runs sets *status.
func newCLI(stdout, stderr io.Writer, status *int) *cobra.Command {
	root := &cobra.Command{
		Use:     "nsbind",
		Short:   "run a server that wants a privileged port, without root",
		Long:    rootLong,
		Example: rootExample,
		Version: readBuildVersion().String(),
		// No arguments: the help, as an error.
		RunE: func(cmd *cobra.Command, args []string) error {
			helptext.Write(stderr, cmd, rootFooter)
			*status = exitFailed
			return nil
		},
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	completionShells := []string{"bash", "zsh", "fish"}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetVersionTemplate("{{.Version}}\n")
	root.Flags().BoolP("version", "v", false, "print the version")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) { helptext.Write(cmd.OutOrStdout(), cmd, rootFooter) })

	var ro runOptions
	runCmd := &cobra.Command{
		Use:   "run [flags] [--] COMMAND [ARG...]",
		Short: "run COMMAND in a new namespace, publishing its ports",
		Long:  runLong,
		RunE: func(cmd *cobra.Command, args []string) error {
			ro.changed = cmd.Flags().Changed
			*status = runParsed(ro, args, stdout, stderr)
			return nil
		},
		// COMMAND is a program: complete file names.
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			return nil, cobra.ShellCompDirectiveDefault
		},
	}
	runCmd.Flags().AddFlagSet(runFlags(&ro))
	runCmd.Flags().SetInterspersed(false)
	completeValues(runCmd, map[string][]string{
		"log-level":      {"debug", "info", "warn", "error"},
		"net":            {netRelay, netVeth},
		"source-address": {"client", "loopback"},
		"proxy-protocol": {"v1", "v2"},
		"publish":        nil,
		"to-host":        nil,
		"subnet":         nil,
	})

	var do doctorOptions
	doctorCmd := &cobra.Command{
		Use:   "doctor [--json]",
		Short: "check that this host lets nsbind run",
		Long:  doctorLong,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("doctor takes no arguments, got %q", args)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			*status = doctorParsed(do, stdout)
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	doctorCmd.Flags().AddFlagSet(doctorFlags(&do))

	var versionJSON bool
	versionCmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "print the version",
		Long: `Prints nsbind's version, and the module version, VCS revision and Go version
the binary was built with (the same line as nsbind --version).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("version takes no arguments, got %q", args)
			}
			printVersion(stdout, versionJSON)
			return nil
		},
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	versionCmd.Flags().BoolVar(&versionJSON, "json", false, "print the version as one JSON object, for scripts")

	completionCmd := &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "print the shell completion script",
		Long:      completionLong,
		ValidArgs: completionShells,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 || !slices.Contains(completionShells, args[0]) {
				return fmt.Errorf("completion needs one shell of %s, got %q", strings.Join(completionShells, ", "), args)
			}
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(stdout, true)
			case "zsh":
				return root.GenZshCompletion(stdout)
			default:
				return root.GenFishCompletion(stdout, true)
			}
		},
	}

	helpCmd := &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "show the help of nsbind or of a command",
		Long:  "Shows the help of nsbind, or of COMMAND: nsbind help run is nsbind run --help.",
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 || target.Hidden {
				return fmt.Errorf("no help for %q: the commands are %s", strings.Join(args, " "), strings.Join(helptext.CommandNames(root), ", "))
			}
			target.HelpFunc()(target, nil)
			return nil
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, name := range helptext.CommandNames(root) {
				if len(args) == 0 && strings.HasPrefix(name, toComplete) {
					names = append(names, name)
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}

	root.AddCommand(runCmd, doctorCmd, versionCmd, completionCmd)
	root.SetHelpCommand(helpCmd)
	root.AddCommand(helpCmd)
	addSelfParsed(root, selfParsedCommands(), stdout, stderr, status)
	return root
}

// addSelfParsed adds the commands of cmds to root, and gives every command
// of root its -h, --help.
func addSelfParsed(root *cobra.Command, cmds []selfParsed, stdout, stderr io.Writer, status *int) {
	for _, sp := range cmds {
		f := sp.run
		cmd := &cobra.Command{
			Use:                strings.TrimSpace(sp.name + " " + sp.usage),
			Short:              sp.short,
			DisableFlagParsing: true,
			RunE: func(_ *cobra.Command, args []string) error {
				*status = f(args, stdout, stderr)
				return nil
			},
		}
		cmd.SetHelpFunc(func(*cobra.Command, []string) { *status = f([]string{"--help"}, stdout, stderr) })
		root.AddCommand(cmd)
	}
	for _, c := range append([]*cobra.Command{root}, root.Commands()...) {
		c.DisableFlagsInUseLine = true // each Use says where its flags go
		if c.Flags().Lookup("help") == nil {
			c.Flags().BoolP("help", "h", false, "show this help")
		}
	}
}

// completeValues makes the values of flags complete to the words given,
// and nothing (no file names) for a flag given nil.
func completeValues(cmd *cobra.Command, values map[string][]string) {
	for name, words := range values {
		if cmd.Flags().Lookup(name) == nil {
			continue // a flag renamed: TestFlagValueCompletion says so
		}
		cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
	}
}
