package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/internal/instance"
	"github.com/nsbind/nsbind/internal/logline"
	"github.com/nsbind/nsbind/internal/parent"
)

type runOptions struct {
	publish        []string
	root           bool
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
	stats            bool
	// --name: the instance's name for nsbind ps, port, exec, stats, stop
	// (instances_linux.go).
	name string
}

const runUsage = `Usage: nsbind run [flags] [--] COMMAND [ARG...]

Runs COMMAND in a new user and network namespace, where it may bind any port
(80, 443, 53...) with no privilege, and publishes its ports on the host.
Flags end at COMMAND: 'nsbind run -p 80:8080 ./server -v' passes -v to the server.

  -p 80:8080 publishes the server's port 80 (inside) on host port 8080
  (127.0.0.1 and [::1]). Forms of -p NSPORT[:[HOSTIP:]HOSTPORT][/PROTO]:
    80                   inside 80 <- host port 80 (needs a host that allows it)
    80:8080              inside 80 <- host 127.0.0.1:8080 and [::1]:8080
    80:0                 host port chosen by the kernel (printed on start)
    80:0.0.0.0:8080      every IPv4 address; 80:[::]:8080 every address, both families
    80:192.0.2.7:8080    one host address
    53:5353/udp          UDP (/tcp is the default)
    8000-8009:18000-18009  ranges of equal length, port by port

Flags:
`

func runCommand(args []string, stdout, stderr io.Writer) int {
	var o runOptions
	fs := pflag.NewFlagSet("nsbind run", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.SetOutput(stderr)
	fs.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a port: NSPORT[:[HOSTIP:]HOSTPORT][/PROTO] (repeatable)")
	fs.BoolVar(&o.root, "root", false, "map your user to root (uid 0) inside and keep the namespace's capabilities, for servers that insist on root")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "print none of nsbind's own lines except errors")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug shows namespace setup and every connection; info, warn, error")
	fs.DurationVar(&o.connectTimeout, "connect-timeout", 5*time.Second, "how long a connection that arrives before the server listens waits for it")
	fs.StringVar(&o.portsFile, "ports-file", "", "write the published host sockets to `FILE` as JSON once they listen")
	fs.StringVar(&o.sourceAddress, "source-address", "client", "where the server sees TCP and UDP connections come from: client (the real client's address and port) or loopback")
	fs.StringVar(&o.proxyProtocol, "proxy-protocol", "", "send a PROXY protocol header (v1 or v2) first on each TCP connection, for servers configured to expect one")
	fs.StringArrayVar(&o.toHost, "to-host", nil, "let localhost:PORT inside reach the host's localhost:HOSTPORT: `PORT[:HOSTPORT][/PROTO]` (repeatable)")
	fs.BoolVar(&o.isolated, "isolated", false, "no way out of the namespace at all: only published ports reach the server")
	fs.StringVar(&o.resolvConf, "resolv-conf", "", "programs inside see `FILE` as /etc/resolv.conf (a nameserver on loopback is the host's)")
	fs.DurationVar(&o.udpTimeout, "udp-timeout", forward.DefaultUDPTimeout, "a UDP flow (one client address and port) ends after this long with no datagram either way")
	fs.IntVar(&o.udpMaxFlows, "udp-max-flows", forward.DefaultUDPMaxFlows, "most UDP flows at once per published UDP socket; a new client closes the flow idle longest")
	fs.StringVar(&o.net, "net", netRelay, "the data path: relay (no privilege needed) or veth (a veth pair, published ports also through the kernel; needs CAP_NET_ADMIN on the host, e.g. root)")
	fs.StringArrayVar(&o.subnets, "subnet", nil, "with --net=veth: the veth's IPv4 `CIDR` (a /30 or larger) and/or IPv6 CIDR, instead of a free one nsbind picks")
	fs.BoolVar(&o.direct, "direct", false, "give the server the host socket itself when it binds a published port: no relay, and it sees the real client addresses")
	fs.BoolVar(&o.stats, "stats", false, "when the server ends, print connections and bytes per published host socket")
	fs.StringVar(&o.name, "name", "", "name the run for nsbind ps, port, exec, stats and stop (default: nsbind-XXXX, printed on start); names are per user")
	help := fs.BoolP("help", "h", false, "show this help")
	fs.Usage = func() {
		fmt.Fprint(stderr, runUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "nsbind: %v\nRun 'nsbind run --help' for usage.\n", err)
		return exitFailed
	}
	if *help {
		fs.SetOutput(stdout)
		fmt.Fprint(stdout, runUsage)
		fs.PrintDefaults()
		return 0
	}
	command := fs.Args()
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
	if o.direct && proxyVersion != 0 {
		fmt.Fprintf(stderr, "nsbind: --direct and --proxy-protocol do not go together: with --direct the server accepts the clients itself and sees their real addresses, with no header; drop one of them\n")
		return exitFailed
	}
	if o.direct && o.net == netVeth {
		fmt.Fprintf(stderr, "nsbind: --direct and --net=veth are two different data paths: choose one (--direct needs no privilege)\n")
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
	if o.udpTimeout <= 0 {
		fmt.Fprintf(stderr, "nsbind: --udp-timeout must be positive, e.g. --udp-timeout 30s\n")
		return exitFailed
	}
	if o.udpMaxFlows < 1 {
		fmt.Fprintf(stderr, "nsbind: --udp-max-flows must be at least 1\n")
		return exitFailed
	}
	if o.name != "" && !instance.ValidName(o.name) {
		fmt.Fprintf(stderr, "nsbind: invalid --name %q: use up to 63 letters, digits, '_', '.' or '-', starting with a letter or digit\n", o.name)
		return exitFailed
	}
	return parent.Run(parent.Options{
		Publish: o.publish, Command: command, Root: o.root, Quiet: o.quiet,
		LogLevel: o.logLevel, ConnectTimeout: o.connectTimeout, PortsFile: o.portsFile,
		SourceAddress: o.sourceAddress, ProxyProtocol: proxyVersion,
		ToHost: o.toHost, Isolated: o.isolated, ResolvConf: o.resolvConf,
		UDPTimeout: o.udpTimeout, UDPMaxFlows: o.udpMaxFlows,
		Veth: o.net == netVeth, Subnet4: o.subnet4, Subnet6: o.subnet6,
		Direct: o.direct, Stats: o.stats, Name: o.name,
		CPUProfile: os.Getenv(profileEnv),
		Logger:     logline.New(stderr, level),
		Stderr:     stderr,
		Describe:   func(err error) string { return describeRun(err, o.publish) },
	})
}

// profileEnv names a file the helper writes a CPU profile of the relays to
// (go tool pprof FILE), for work on the hot path; see README, Performance.
// It is the one variable of nsbind's own that a user sets, and it changes
// nothing but that a profile is written. No NSBIND_* variable reaches the
// server.
const profileEnv = "NSBIND_CPUPROFILE"
