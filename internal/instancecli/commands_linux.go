package instancecli

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

	"github.com/nsbind/nsbind/internal/instance"
)

// requestTimeout bounds one request to an instance (stats asks the
// helper, which answers at once).
const requestTimeout = 15 * time.Second

// exitFailed is the status of a command that failed: nsbind's own failure.
const exitFailed = 125

// Output is where a command writes, and how it words an error.
type Output struct {
	Stdout, Stderr io.Writer
	// Describe is the one line printed for an error after "nsbind: ": for
	// the errors it knows, what to do about them (cmd/nsbind's hints).
	Describe func(error) string
}

// fail prints err as the line of a failed command and returns its status.
func (o Output) fail(err error) int {
	fmt.Fprintf(o.Stderr, "nsbind: %s\n", o.Describe(err))
	return exitFailed
}

// dial connects to the instance name, or says why not.
func (o Output) dial(name string) (*instance.Client, bool) {
	c, err := instance.Dial(name)
	if err != nil {
		if errors.Is(err, instance.ErrNoInstance) {
			fmt.Fprintf(o.Stderr, "nsbind: %v ('nsbind ps' lists the running ones)\n", err)
		} else {
			fmt.Fprintf(o.Stderr, "nsbind: %s\n", o.Describe(err))
		}
		return nil, false
	}
	return c, true
}

// PS is nsbind ps: the running instances as a table (root: with their
// users), or with asJSON as a JSON array.
func PS(o Output, asJSON bool) int {
	list, err := instance.List()
	if err != nil {
		return o.fail(err)
	}
	if asJSON {
		if list == nil {
			list = []instance.InstanceInfo{}
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		fmt.Fprintf(o.Stdout, "%s\n", b)
		return 0
	}
	w := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
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

// Port is nsbind port NAME ACTION SPEC...: action "add" publishes specs on
// the instance name, "rm" unpublishes them, "ls" (no specs) lists every
// published host socket; asJSON prints the sockets as a JSON array. The
// caller has checked action and specs.
func Port(o Output, name, action string, specs []string, asJSON bool) int {
	c, ok := o.dial(name)
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
		return o.fail(err)
	}
	if asJSON {
		if socks == nil {
			socks = []instance.Socket{}
		}
		b, _ := json.MarshalIndent(socks, "", "  ")
		fmt.Fprintf(o.Stdout, "%s\n", b)
		return 0
	}
	switch action {
	case "ls":
		w := tabwriter.NewWriter(o.Stdout, 0, 4, 2, ' ', 0)
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
			fmt.Fprintf(o.Stdout, "%s → :%d/%s %s\n", s.Host, s.Inside, s.Proto, verb)
		}
	}
	return 0
}

// StatsOptions are the flags of nsbind stats.
type StatsOptions struct {
	// Watch prints the counters again every Interval (positive) until
	// SIGINT or SIGTERM, or the instance ends.
	Watch    bool
	Interval time.Duration
	// JSON prints them as a JSON array (one a line with Watch).
	JSON bool
}

// Stats is nsbind stats NAME: the counters of the instance name's
// published sockets, once or with opts.Watch until interrupted. Watching
// a terminal clears it before each table.
func Stats(o Output, name string, opts StatsOptions) int {
	c, ok := o.dial(name)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	clear := opts.Watch && !opts.JSON && isTerminal(o.Stdout)
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		stats, err := c.Stats(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0
			}
			if opts.Watch {
				fmt.Fprintf(o.Stderr, "nsbind: the instance %s has ended (%v)\n", c.Name(), err)
				return 0
			}
			return o.fail(err)
		}
		if clear {
			fmt.Fprint(o.Stdout, "\x1b[H\x1b[2J")
		}
		printStats(o.Stdout, stats, opts.JSON)
		if !opts.Watch {
			return 0
		}
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(opts.Interval):
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

// Stop is nsbind stop NAME: it stops the instance name as SIGTERM to its
// nsbind does and waits until the run has ended, at most timeout.
func Stop(o Output, name string, timeout time.Duration) int {
	c, ok := o.dial(name)
	if !ok {
		return exitFailed
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(o.Stderr, "nsbind: the instance %s did not end within %v (its server ignores SIGTERM?): kill -9 %d ends it at once\n",
				c.Name(), timeout, c.Pid())
			return exitFailed
		}
		return o.fail(err)
	}
	return 0
}
