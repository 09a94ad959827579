package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/internal/hints"
	"github.com/nsbind/nsbind/internal/instance"
	"github.com/nsbind/nsbind/internal/logline"
	"github.com/nsbind/nsbind/internal/parent"
	"github.com/nsbind/nsbind/nsutil"
)

type runOptions struct {
	publish        []string
	root           bool
	user           string
	quiet          bool
	logLevel       string
	connectTimeout time.Duration
	portsFile      string
	sourceAddress  string
	proxyProtocol  string
	// Outbound connections (internal/parent, outbound.go).
	toHost      []string
	isolated    bool
	resolvConf  string
	udpTimeout  time.Duration
	udpMaxFlows int
	// --net and --subnet (veth.go, veth_linux.go; internal/parent).
	net              string
	subnets          []string
	subnet4, subnet6 netip.Prefix
	direct           bool
	relay            bool
	directUDP        bool
	// changed reports whether a flag was given (the native path is the
	// default, so --direct given and --direct by default differ); set by
	// the command that parsed the flags.
	changed func(name string) bool
	stats   bool
	// --socket-activation (internal/helper, activation_linux.go).
	socketActivation bool
	// --confine and what it lets the server see (nsutil/confine.go).
	confine               bool
	allowRead, allowWrite []string
	// --name: the instance's name for nsbind ps, port, exec, stats, stop
	// (instances_linux.go, internal/instancecli).
	name string
}

// runCommand is "nsbind run ARGS...", as the command line has it.
func runCommand(args []string, stdout, stderr io.Writer) int {
	return run(append([]string{"run"}, args...), stdout, stderr)
}

// runFlags are the flags of nsbind run, set into o as they are parsed. The
// cobra command of run (cli.go) parses them, and they are its help, its
// completion and its part of the man page. Flags end at COMMAND.
func runFlags(o *runOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("nsbind run", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a port of the server on the host, `SPEC` = NSPORT[-END][:[HOSTIP:]HOSTPORT[-END]][/PROTO] (repeatable)")
	// Who the server is: --root and --user (internal/parent, helper_linux.go).
	fs.BoolVar(&o.root, "root", false, "start the server as root (uid 0) inside, with the namespace's capabilities, for servers that start as root and drop to a worker user: uid 0 is you on the host (never host root), ids 1 and up your ranges of /etc/subuid and /etc/subgid (newuidmap)")
	fs.StringVar(&o.user, "user", "", "when nsbind runs as root: the unprivileged `NAME|UID` the server runs as on the host (default: the user sudo was called by, SUDO_UID); the server is never host root")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "print none of nsbind's own lines except errors (and what --stats asks for)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug shows namespace setup and every connection; info, warn, error")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Second, "how long a connection that arrives before the server listens waits for it")
	fs.StringVar(&o.portsFile, "ports-file", "", "write the published host sockets to `FILE` as JSON before the server starts, and remove it at exit (replaces only a regular file)")
	fs.StringVar(&o.sourceAddress, "source-address", "client", "where the server sees TCP and UDP connections come from: client (the real client's address and port) or loopback")
	fs.StringVar(&o.proxyProtocol, "proxy-protocol", "", "send a PROXY protocol header (v1 or v2) first on each TCP connection, for servers configured to expect one")
	fs.StringArrayVar(&o.toHost, "to-host", nil, "let localhost:PORT inside reach the host's localhost:HOSTPORT: `PORT[:HOSTPORT][/PROTO]` (repeatable)")
	fs.BoolVar(&o.isolated, "isolated", false, "no way out of the namespace's network at all: only published ports reach the server (host unix sockets such as $SSH_AUTH_SOCK and D-Bus stay reachable; see --confine)")
	fs.StringVar(&o.resolvConf, "resolv-conf", "", "programs inside see `FILE` as /etc/resolv.conf (a nameserver on loopback is the host's)")
	fs.DurationVar(&o.udpTimeout, "udp-timeout", forward.DefaultUDPTimeout, "a UDP flow (one client address and port) ends after this long with no datagram either way (at least 1s)")
	fs.IntVar(&o.udpMaxFlows, "udp-max-flows", forward.DefaultUDPMaxFlows, "most UDP flows at once per published UDP socket; a new client closes the flow idle longest")
	fs.StringVar(&o.net, "net", netRelay, "the data path: relay (no privilege needed) or veth (a veth pair, published ports also through the kernel; needs CAP_NET_ADMIN on the host, e.g. root)")
	fs.StringArrayVar(&o.subnets, "subnet", nil, "with --net=veth: the veth's IPv4 `CIDR` (a /30 or larger) and/or IPv6 CIDR, instead of a free one nsbind picks")
	fs.BoolVar(&o.direct, "direct", true, "the native path (the default): the server gets the published TCP host sockets themselves when it binds their port, so it accepts its clients with no relay and sees their real addresses; --direct=false is --relay")
	fs.BoolVar(&o.relay, "relay", false, "relay every published port through nsbind instead of the native path: the server binds inside and nsbind copies each connection (slower; for servers the native path does not suit)")
	fs.BoolVar(&o.directUDP, "direct-udp", false, "the native path for UDP too: the server gets the host UDP socket itself; that socket can send to any address the host reaches, host loopback services included, past --to-host (so not with --isolated)")
	fs.BoolVar(&o.socketActivation, "socket-activation", false, "hand the server the host sockets themselves, the systemd way (descriptors 3.., LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES \"PORT/PROTO\"), for servers that support it: no relay, no copy")
	fs.BoolVar(&o.stats, "stats", false, "when the server ends, print connections and bytes per published host socket")
	fs.BoolVar(&o.confine, "confine", false, "confine the server: it sees the host's files read-only, writes only its working directory and a private /tmp, and sees neither your home (but the working directory) nor your session's sockets and secrets (README, --confine)")
	fs.StringArrayVar(&o.allowRead, "allow-read", nil, "with --confine: let the server read `PATH` (a file or directory) even where it is hidden (repeatable)")
	fs.StringArrayVar(&o.allowWrite, "allow-write", nil, "with --confine: let the server read and write `PATH` (a file or directory) (repeatable)")
	fs.StringVar(&o.name, "name", "", "name the run for nsbind ps, port, exec, stats and stop (default: nsbind-XXXX, printed on start); names are per user")
	return fs
}

// runParsed checks the options of nsbind run that flags alone cannot, and
// runs command with them.
func runParsed(o runOptions, command []string, stdout, stderr io.Writer) int {
	if len(command) == 0 {
		fmt.Fprintf(stderr, "nsbind: no command to run\nUsage: nsbind run [flags] [--] COMMAND [ARG...], e.g. nsbind run -p 80:8080 python3 -m http.server 80\n")
		return exitFailed
	}
	level, err := logline.ParseLevel(o.logLevel)
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	if o.connectTimeout < 0 {
		fmt.Fprintf(stderr, "nsbind: --connect-timeout must not be negative\n")
		return exitFailed
	}
	if o.sourceAddress != "client" && o.sourceAddress != "loopback" {
		fmt.Fprintf(stderr, "nsbind: invalid --source-address %q: use client (the server sees the real client) or loopback\n", o.sourceAddress)
		return exitFailed
	}
	proxyVersion := 0
	switch o.proxyProtocol {
	case "":
	case "v1", "1":
		proxyVersion = 1
	case "v2", "2":
		proxyVersion = 2
	default:
		fmt.Fprintf(stderr, "nsbind: invalid --proxy-protocol %q: use v1 or v2\n", o.proxyProtocol)
		return exitFailed
	}
	direct, why := chooseDataPath(&o, proxyVersion)
	if direct && why != "" {
		fmt.Fprintf(stderr, "nsbind: %s\n", why)
		return exitFailed
	}
	if o.socketActivation {
		// The server takes the host sockets itself: nothing relays, so
		// nothing that changes the relay or another data path applies.
		switch {
		case len(o.publish) == 0:
			fmt.Fprintf(stderr, "nsbind: --socket-activation hands the server the host sockets of -p: publish at least one, e.g. -p 80:8080\n")
			return exitFailed
		case o.changed("direct") && o.direct:
			fmt.Fprintf(stderr, "nsbind: --socket-activation and --direct both hand the server the host sockets, one at descriptors 3.. (LISTEN_FDS), the other at its bind: choose one\n")
			return exitFailed
		case o.directUDP:
			fmt.Fprintf(stderr, "nsbind: --socket-activation hands the server the UDP host sockets too, at descriptors 3.. (LISTEN_FDS): drop --direct-udp\n")
			return exitFailed
		case o.changed("source-address") && o.sourceAddress == "loopback":
			fmt.Fprintf(stderr, "nsbind: --source-address=loopback needs the relay, and with --socket-activation the server accepts the clients itself (it sees their real addresses): drop one of them\n")
			return exitFailed
		case proxyVersion != 0:
			fmt.Fprintf(stderr, "nsbind: --proxy-protocol needs the relay, and with --socket-activation the server accepts the clients itself (it sees their real addresses): drop one of them\n")
			return exitFailed
		case o.net == netVeth:
			fmt.Fprintf(stderr, "nsbind: --socket-activation and --net=veth are two different data paths: choose one\n")
			return exitFailed
		case o.isolated && publishesUDP(o.publish):
			// As --direct-udp with --isolated: a UDP host socket can
			// sendto any address the host reaches (a TCP listener
			// cannot connect).
			fmt.Fprintf(stderr, "nsbind: --socket-activation with a UDP port and --isolated do not go together: a UDP socket given to the server is a host socket and can send to any address the host reaches; drop --isolated, or --socket-activation (UDP is then relayed)\n")
			return exitFailed
		}
	}
	if o.directUDP && !direct {
		if why == "" {
			why = "--relay (or --direct=false, --net=veth) turns it off"
		}
		fmt.Fprintf(stderr, "nsbind: --direct-udp needs the native path, but %s\n", why)
		return exitFailed
	}
	if o.directUDP && o.isolated {
		fmt.Fprintf(stderr, "nsbind: --direct-udp and --isolated do not go together: a UDP socket given to the server is a host socket and can send to any address the host reaches; drop --direct-udp (UDP is then relayed)\n")
		return exitFailed
	}
	if err := checkNet(&o); err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	if o.quiet {
		level = max(level, slog.LevelError)
		o.logLevel = level.String()
	}
	// The lines nsbind prints as the server starts (the published
	// sockets, the veth) are info: a level above hides them, as --quiet.
	if level > slog.LevelInfo {
		o.quiet = true
	}
	if err := checkRunInputs(&o); err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	if o.udpMaxFlows < 1 {
		fmt.Fprintf(stderr, "nsbind: --udp-max-flows must be at least 1\n")
		return exitFailed
	}
	confine, err := confineConfig(o)
	if err != nil {
		fmt.Fprintf(stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	// nsbind's own lines go through a queue, so that a stderr that stalls
	// or is closed never holds up a relay or the end of the run.
	errOut := logline.NewWriter(stderr)
	defer errOut.Close(time.Second)
	if o.name != "" && !instance.ValidName(o.name) {
		fmt.Fprintf(stderr, "nsbind: invalid --name %q: use up to 63 letters, digits, '_', '.' or '-', starting with a letter or digit\n", o.name)
		return exitFailed
	}
	if !direct && why != "" && !o.quiet {
		fmt.Fprintf(stderr, "nsbind: relaying the published ports: %s\n", why)
	}
	return parent.Run(parent.Options{
		Publish: o.publish, Command: command, Root: o.root, User: o.user, Quiet: o.quiet,
		LogLevel: o.logLevel, ConnectTimeout: o.connectTimeout, PortsFile: o.portsFile,
		SourceAddress: o.sourceAddress, ProxyProtocol: proxyVersion,
		ToHost: o.toHost, Isolated: o.isolated, ResolvConf: o.resolvConf,
		UDPTimeout: o.udpTimeout, UDPMaxFlows: o.udpMaxFlows,
		Veth: o.net == netVeth, Subnet4: o.subnet4, Subnet6: o.subnet6,
		Direct: direct, DirectUDP: o.directUDP, Stats: o.stats, Name: o.name,
		SocketActivation: o.socketActivation,
		Confine:          confine,
		CPUProfile:       os.Getenv(profileEnv),
		Logger:           logline.New(errOut, level),
		Stderr:           errOut,
		Describe:         func(err error) string { return hints.DescribeRun(err, o.publish) },
	})
}

// publishesUDP reports whether any of the -p specs publishes UDP. A spec
// that does not parse is not UDP here: the run fails on it later, with
// its own message.
func publishesUDP(publish []string) bool {
	for _, p := range publish {
		if s, err := forward.ParseSpec(p); err == nil && s.Proto == forward.UDP {
			return true
		}
	}
	return false
}

// minUDPTimeout is the shortest --udp-timeout: a flow that ends sooner
// closes before the server's reply is back (with 1ns the relay answered no
// datagram at all).
const minUDPTimeout = time.Second

// checkRunInputs checks the values of run's flags that would otherwise
// break the run later or hang it: a --udp-timeout too short for any reply,
// and a --resolv-conf that is not a regular file (opening a FIFO to read
// its nameservers would wait for a writer forever).
func checkRunInputs(o *runOptions) error {
	if o.udpTimeout <= 0 {
		return errors.New("--udp-timeout must be positive, e.g. --udp-timeout 30s")
	}
	if o.udpTimeout < minUDPTimeout {
		return fmt.Errorf("--udp-timeout %v is too short: a UDP flow must live at least %v for the server's reply to come back, e.g. --udp-timeout 30s", o.udpTimeout, minUDPTimeout)
	}
	if o.resolvConf != "" {
		// O_NONBLOCK: opening a FIFO does not wait for a writer.
		f, err := os.OpenFile(o.resolvConf, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("--resolv-conf: %w", err)
		}
		fi, err := f.Stat()
		f.Close()
		if err != nil {
			return fmt.Errorf("--resolv-conf: %w", err)
		}
		if fi.IsDir() {
			return fmt.Errorf("--resolv-conf %s is a directory: give a file, which programs inside then see as /etc/resolv.conf", o.resolvConf)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("--resolv-conf %s is %s, not a regular file: programs inside see it as /etc/resolv.conf, so give a file, e.g. write what it would give to one first: cat %s > resolv.conf", o.resolvConf, parent.KindOf(fi.Mode()), o.resolvConf)
		}
	}
	return nil
}

// chooseDataPath decides between the native path and the relay. The native
// path is the default; --relay or --direct=false choose the relay, and so
// do flags only the relay can serve, with why (said once). When the native
// path was asked for explicitly next to such a flag, direct is true and
// why says the conflict. --socket-activation is neither: direct is false,
// with nothing to say (the server gets the sockets, nothing relays).
func chooseDataPath(o *runOptions, proxyVersion int) (direct bool, why string) {
	asked := o.changed("direct") && o.direct
	if o.relay && asked {
		return true, "--direct and --relay are the two data paths: choose one"
	}
	if o.relay || !o.direct {
		return false, ""
	}
	if o.socketActivation && !asked {
		// A data path of its own: the server gets exactly the published
		// host sockets at 3.., each listening. The native path's
		// catch-alls and family sockets that wait for a bind, and its
		// bind filter, would be handed over too (a catch-all [::] and
		// sockets that never listen). An explicit --direct beside it
		// is refused in runParsed.
		return false, ""
	}
	switch {
	case proxyVersion != 0:
		why = "--proxy-protocol needs the relay to send the header (with the native path the server accepts the clients itself and sees their real addresses, with no header)"
		if asked {
			return true, "--direct and --proxy-protocol do not go together: " + why + "; drop one of them"
		}
	case o.net == netVeth:
		// A data path of its own, with the relay beside it: nothing to say.
		if asked {
			return true, "--direct and --net=veth are two different data paths: choose one (--direct needs no privilege)"
		}
		return false, ""
	case o.changed("source-address") && o.sourceAddress == "loopback":
		why = "--source-address=loopback has the relay dial the server from loopback (with the native path the server sees the real clients)"
		if asked {
			return true, "--direct and --source-address=loopback do not go together: " + why
		}
	default:
		return true, ""
	}
	return false, why
}

// profileEnv names a file the helper writes a CPU profile of the relays to
// (go tool pprof FILE), for work on the hot path; see README, Performance.
// It is the one variable of nsbind's own that a user sets, and it changes
// nothing but that a profile is written. No NSBIND_* variable reaches the
// server.
const profileEnv = "NSBIND_CPUPROFILE"

// confineConfig is the server's confinement of --confine, --allow-read and
// --allow-write, nil without --confine. Every path must exist: it is
// checked here, before anything starts, and made absolute, so that the
// exec step finds the same paths whatever its working directory.
func confineConfig(o runOptions) (*nsutil.ConfineConfig, error) {
	if !o.confine {
		if len(o.allowRead) > 0 || len(o.allowWrite) > 0 {
			return nil, errors.New("--allow-read and --allow-write open paths in the view of --confine, and mean nothing without it: add --confine")
		}
		return nil, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("--confine: the working directory: %w", err)
	}
	cfg := nsutil.ConfineConfigFromEnv(os.Environ(), os.Getuid(), wd)
	abs := func(paths []string) ([]string, error) {
		var out []string
		for _, p := range paths {
			a, err := filepath.Abs(p)
			if err != nil {
				return nil, fmt.Errorf("--confine: %s: %w", p, err)
			}
			out = append(out, a)
		}
		return out, nil
	}
	if cfg.AllowRead, err = abs(o.allowRead); err != nil {
		return nil, err
	}
	if cfg.AllowWrite, err = abs(o.allowWrite); err != nil {
		return nil, err
	}
	if err := nsutil.CheckConfine(cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}
