package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/internal/helptext"
	"github.com/nsbind/nsbind/internal/instance"
)

// The instance commands: nsbind ps, port, stats, stop and exec talk to a
// running nsbind run over its control socket (internal/instance). Each
// connects, asks and exits; the run answers.

// requestTimeout bounds one request to an instance (stats asks the
// helper, which answers at once).
const requestTimeout = 15 * time.Second

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

// dialInstance connects to the instance name, or says why not.
func dialInstance(name string, stderr io.Writer) (*instance.Client, bool) {
	c, err := instance.Dial(name)
	if err != nil {
		if errors.Is(err, instance.ErrNoInstance) {
			fmt.Fprintf(stderr, "nsbind: %v ('nsbind ps' lists the running ones)\n", err)
		} else {
			fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		}
		return nil, false
	}
	return c, true
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
	list, err := instance.List()
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		return exitFailed
	}
	if *asJSON {
		if list == nil {
			list = []instance.InstanceInfo{}
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	root := os.Geteuid() == 0
	if root {
		fmt.Fprint(w, "USER\t")
	}
	fmt.Fprintln(w, "NAME\tPID\tUPTIME\tCOMMAND\tPORTS")
	for _, ii := range list {
		if root {
			fmt.Fprintf(w, "%s\t", userName(ii.UID))
		}
		uptime, command, ports := "-", strings.Join(ii.Command, " "), socketsLine(ii.Sockets)
		if !ii.Started.IsZero() {
			uptime = formatUptime(time.Since(ii.Started))
		}
		if ii.Error != "" {
			command, ports = "("+ii.Error+")", "-"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\n", ii.Name, ii.Pid, uptime, shorten(command, 40), ports)
	}
	w.Flush()
	return 0
}

// socketsLine is the published sockets of one instance, on one line.
func socketsLine(socks []instance.Socket) string {
	if len(socks) == 0 {
		return "-"
	}
	parts := make([]string, len(socks))
	for i, s := range socks {
		parts[i] = fmt.Sprintf("%s→%d/%s (%s)", s.Host, s.Inside, s.Proto, s.Path)
	}
	return strings.Join(parts, ", ")
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return strconv.Itoa(uid)
}

// formatUptime is d as ps shows it: 42s, 5m3s, 2h5m, 3d4h.
func formatUptime(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
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
		fmt.Fprintf(stderr, "nsbind: port needs an instance and add, rm or ls\n%s", portUsage)
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
	c, ok := dialInstance(name, stderr)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	var socks []instance.Socket
	var err error
	switch action {
	case "add":
		socks, err = c.PortAdd(ctx, specs)
	case "rm":
		socks, err = c.PortRm(ctx, specs)
	case "ls":
		socks, err = c.PortList(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		return exitFailed
	}
	if *asJSON {
		if socks == nil {
			socks = []instance.Socket{}
		}
		b, _ := json.MarshalIndent(socks, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	switch action {
	case "ls":
		w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "HOST\tINSIDE\tPATH\tSPEC")
		for _, s := range socks {
			fmt.Fprintf(w, "%s\t%d/%s\t%s\t%s\n", s.Host, s.Inside, s.Proto, s.Path, s.Spec)
		}
		w.Flush()
	default:
		verb := "added"
		if action == "rm" {
			verb = "removed"
		}
		for _, s := range socks {
			fmt.Fprintf(stdout, "%s → :%d/%s %s\n", s.Host, s.Inside, s.Proto, verb)
		}
	}
	return 0
}

const statsUsage = `Usage: nsbind stats NAME [--watch]

Prints the counters of --stats of the running instance NAME, now: per
published host socket, connections (UDP: flows) opened, open now and failed,
and bytes in and out. A host socket the server accepts on itself (native)
counts nothing: nsbind does not see its connections.

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
		fmt.Fprintf(stderr, "nsbind: stats needs one instance name\n%s", statsUsage)
		return exitFailed
	}
	if *interval <= 0 {
		fmt.Fprintf(stderr, "nsbind: --interval must be positive\n")
		return exitFailed
	}
	c, ok := dialInstance(fs.Arg(0), stderr)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	clear := *watch && !*asJSON && isTerminal(stdout)
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		stats, err := c.Stats(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			if *watch {
				fmt.Fprintf(stderr, "nsbind: the instance %s has ended (%v)\n", c.Name(), err)
				return 0
			}
			fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
			return exitFailed
		}
		if clear {
			fmt.Fprint(stdout, "\x1b[H\x1b[2J")
		}
		printStats(stdout, stats, *asJSON)
		if !*watch {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(*interval):
		}
	}
}

func printStats(w io.Writer, stats []instance.SocketStats, asJSON bool) {
	if asJSON {
		if stats == nil {
			stats = []instance.SocketStats{}
		}
		b, _ := json.Marshal(stats)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "HOST\tINSIDE\tPATH\tCONNS\tACTIVE\tFAILED\tBYTES IN\tBYTES OUT\tDATAGRAMS\t")
	for _, s := range stats {
		fmt.Fprintf(tw, "%s\t%d/%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", s.Host, s.Inside, s.Proto, s.Path,
			s.Conns, s.Active, s.Failed, s.BytesIn, s.BytesOut, s.Datagrams)
	}
	tw.Flush()
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
		fmt.Fprintf(stderr, "nsbind: stop needs one instance name\n%s", stopUsage)
		return exitFailed
	}
	c, ok := dialInstance(fs.Arg(0), stderr)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "nsbind: the instance %s did not end within %v (its server ignores SIGTERM?): kill %d ends it at once\n",
				c.Name(), *timeout, c.Pid())
		} else {
			fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		}
		return exitFailed
	}
	return 0
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
	c, ok := dialInstance(rest[0], stderr)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	req := instance.ExecRequest{Args: rest[1:], Env: *env, Dir: *dir, TTY: *tty}
	if *tty {
		return execTTY(c, req, stdout, stderr)
	}
	return execPlain(c, req, stdout, stderr)
}

// execPlain runs req with this process's stdin and the given stdout and
// stderr, passing SIGINT, SIGTERM and SIGHUP on.
func execPlain(c *instance.Client, req instance.ExecRequest, stdout, stderr io.Writer) int {
	out, waitOut, err := outputFile(stdout)
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	errf, waitErr, err := outputFile(stderr)
	if err != nil {
		out.Close()
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	req.Files = []*os.File{os.Stdin, out, errf}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout+30*time.Second)
	e, err := c.Exec(ctx, req)
	cancel()
	// Ours were copies for the process; the pipes end with it.
	closeIfPipe(out, stdout)
	closeIfPipe(errf, stderr)
	if err != nil {
		waitOut()
		waitErr()
		fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		return exitFailed
	}
	return waitExec(e, sigs, func() {
		waitOut()
		waitErr()
	}, stderr)
}

// waitExec passes sigs on to e until it ends and returns its status as
// nsbind's; drain is called before.
func waitExec(e *instance.Exec, sigs <-chan os.Signal, drain func(), stderr io.Writer) int {
	type result struct {
		st  instance.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := e.Wait()
		done <- result{st, err}
	}()
	for {
		select {
		case s := <-sigs:
			e.Signal(s.(syscall.Signal))
		case r := <-done:
			drain()
			if r.err != nil {
				fmt.Fprintf(stderr, "nsbind: %v\n", r.err)
				return exitFailed
			}
			if r.st.Signal != 0 {
				return 128 + r.st.Signal
			}
			return r.st.Code
		}
	}
}

// outputFile is w as a file for the process: w itself when it is one,
// else a pipe copied to w, which wait waits for.
func outputFile(w io.Writer) (f *os.File, wait func(), err error) {
	if f, ok := w.(*os.File); ok {
		return f, func() {}, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() {
		io.Copy(w, r)
		r.Close()
		close(done)
	}()
	return pw, func() { <-done }, nil
}

func closeIfPipe(f *os.File, w io.Writer) {
	if f != w {
		f.Close()
	}
}

// execTTY runs req on a pseudo-terminal made here, on the host: its
// slave goes to the process, this terminal (if stdin is one) goes raw and
// is copied to and from the master, and SIGWINCH resizes it.
func execTTY(c *instance.Client, req instance.ExecRequest, stdout, stderr io.Writer) int {
	master, slave, err := openHostPTY()
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: opening a pseudo-terminal: %v\n", err)
		return exitFailed
	}
	defer master.Close()
	stdinTTY := isTerminal(os.Stdin)
	if stdinTTY {
		copyWinsize(os.Stdin, master)
	}
	req.Files = []*os.File{slave, slave, slave}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGWINCH)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout+30*time.Second)
	e, err := c.Exec(ctx, req)
	cancel()
	slave.Close()
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		return exitFailed
	}
	if stdinTTY {
		if restore, err := makeRaw(os.Stdin); err == nil {
			defer restore()
		}
	}
	// Input: this goroutine ends with the process (nsbind exits); it may
	// be blocked reading stdin until then.
	go io.Copy(master, os.Stdin)
	copied := make(chan struct{})
	go func() {
		// Until EIO: every holder of the slave has closed it.
		io.Copy(stdout, master)
		close(copied)
	}()
	winch := make(chan os.Signal, 4)
	other := make(chan os.Signal, 4)
	go func() {
		for s := range sigs {
			if s == syscall.SIGWINCH {
				winch <- s
			} else {
				other <- s
			}
		}
	}()
	go func() {
		for range winch {
			if stdinTTY {
				copyWinsize(os.Stdin, master)
			}
		}
	}()
	return waitExec(e, other, func() {
		// What the process wrote last is still in the terminal: read it
		// out, but do not wait for a process it left holding the slave.
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
			master.SetReadDeadline(time.Now())
			<-copied
		}
	}, stderr)
}

// openHostPTY opens a new pseudo-terminal pair on the host's /dev/pts.
func openHostPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlocking it: %w", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("finding its number: %w", err)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// copyWinsize gives to's terminal the size of from's.
func copyWinsize(from, to *os.File) {
	ws, err := unix.IoctlGetWinsize(int(from.Fd()), unix.TIOCGWINSZ)
	if err == nil {
		unix.IoctlSetWinsize(int(to.Fd()), unix.TIOCSWINSZ, ws)
	}
}

// makeRaw puts f's terminal in raw mode (as cfmakeraw does) and returns
// what restores it.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
