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
	relay            bool
	directUDP        bool
	stats            bool
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

TCP ports take the native path: when the server binds its port, it gets the
host socket itself (both loopback families), accepts its clients with no relay
and sees their real addresses. --relay relays instead; UDP is relayed unless
--direct-udp.

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
	fs.BoolVar(&o.direct, "direct", true, "the native path (the default): the server gets the published TCP host sockets themselves when it binds their port, so it accepts its clients with no relay and sees their real addresses; --direct=false is --relay")
	fs.BoolVar(&o.relay, "relay", false, "relay every published port through nsbind instead of the native path: the server binds inside and nsbind copies each connection (slower; for servers the native path does not suit)")
	fs.BoolVar(&o.directUDP, "direct-udp", false, "the native path for UDP too: the server gets the host UDP socket itself; that socket can send to any address the host reaches, host loopback services included, past --to-host (so not with --isolated)")
	fs.BoolVar(&o.stats, "stats", false, "when the server ends, print connections and bytes per published host socket")
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
	direct, why := chooseDataPath(fs, &o, proxyVersion)
	if direct && why != "" {
		fmt.Fprintf(stderr, "nsbind: %s\n", why)
		return exitFailed
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
	if o.udpTimeout <= 0 {
		fmt.Fprintf(stderr, "nsbind: --udp-timeout must be positive, e.g. --udp-timeout 30s\n")
		return exitFailed
	}
	if o.udpMaxFlows < 1 {
		fmt.Fprintf(stderr, "nsbind: --udp-max-flows must be at least 1\n")
		return exitFailed
	}
	if !direct && why != "" && !o.quiet {
		fmt.Fprintf(stderr, "nsbind: relaying the published ports: %s\n", why)
	}
	return parent.Run(parent.Options{
		Publish: o.publish, Command: command, Root: o.root, Quiet: o.quiet,
		LogLevel: o.logLevel, ConnectTimeout: o.connectTimeout, PortsFile: o.portsFile,
		SourceAddress: o.sourceAddress, ProxyProtocol: proxyVersion,
		ToHost: o.toHost, Isolated: o.isolated, ResolvConf: o.resolvConf,
		UDPTimeout: o.udpTimeout, UDPMaxFlows: o.udpMaxFlows,
		Veth: o.net == netVeth, Subnet4: o.subnet4, Subnet6: o.subnet6,
		Direct: direct, DirectUDP: o.directUDP, Stats: o.stats,
		CPUProfile: os.Getenv(profileEnv),
		Logger:     logline.New(stderr, level),
		Stderr:     stderr,
		Describe:   describe,
	})
}

// chooseDataPath decides between the native path and the relay. The native
// path is the default; --relay or --direct=false choose the relay, and so
// do flags only the relay can serve, with why (said once). When the native
// path was asked for explicitly next to such a flag, direct is true and
// why says the conflict.
func chooseDataPath(fs *pflag.FlagSet, o *runOptions, proxyVersion int) (direct bool, why string) {
	asked := fs.Changed("direct") && o.direct
	if o.relay && asked {
		return true, "--direct and --relay are the two data paths: choose one"
	}
	if o.relay || !o.direct {
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
	case fs.Changed("source-address") && o.sourceAddress == "loopback":
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
