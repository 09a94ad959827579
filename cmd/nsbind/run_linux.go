package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// forwardedSignals are passed on to the server when nsbind gets them.
var forwardedSignals = []os.Signal{
	syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
}

type runOptions struct {
	publish        []string
	root           bool
	quiet          bool
	logLevel       string
	connectTimeout time.Duration
	portsFile      string
	sourceAddress  string
	proxyProtocol  string
	proxyVersion   int
	// Outbound connections (outbound.go, outbound_linux.go).
	toHost      []string
	isolated    bool
	resolvConf  string
	udpTimeout  time.Duration
	udpMaxFlows int
	// --net and --subnet (veth.go, veth_linux.go).
	net              string
	subnets          []string
	subnet4, subnet6 netip.Prefix
	direct           bool
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
	level, err := parseLevel(o.logLevel)
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
	logger := newLogger(stderr, level)
	o.proxyVersion = proxyVersion
	return runParent(o, command, logger, stderr)
}

// runParent does the parent's part of a run: it binds the host sockets,
// starts the helper, forwards signals and returns the exit status.
func runParent(o runOptions, command []string, logger *slog.Logger, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "nsbind: %s\n", describe(err))
		return code
	}
	// Descriptors nsbind inherited are not for the helper or the server.
	nsutil.CloseOnExecFrom(3)
	var specs []forward.Spec
	for _, p := range o.publish {
		s, err := forward.ParseSpec(p)
		if err != nil {
			return fail(exitFailed, err)
		}
		specs = append(specs, s)
	}
	bindings, err := forward.Expand(specs)
	if err != nil {
		return fail(exitFailed, err)
	}
	outCfg, err := outboundFor(o.toHost, o.isolated, o.resolvConf, bindings)
	if err != nil {
		return fail(exitFailed, err)
	}
	// Fail on a command that cannot run before anything starts.
	if _, err := nsutil.LookPath(command[0]); err != nil {
		return fail(nsutil.FailureCode(err), err)
	}
	// Bind every host socket first: a busy or forbidden port fails here.
	socks, err := forward.Bind(bindings, logger)
	if err != nil {
		return fail(exitFailed, err)
	}
	defer forward.CloseAll(socks)

	cfg := helperConfig{
		Command:        command,
		Root:           o.root,
		Foreground:     terminalIsOurs(),
		LogLevel:       o.logLevel,
		ConnectTimeout: o.connectTimeout,
		SourceAddress:  o.sourceAddress,
		ProxyProtocol:  o.proxyVersion,
		Outbound:       outCfg,
		UDPTimeout:     o.udpTimeout,
		UDPMaxFlows:    o.udpMaxFlows,
		Direct:         o.direct && len(socks) > 0,
	}
	// --net=veth: choose the veth's subnets before the helper starts, so
	// its configuration can carry them (veth_linux.go).
	var veth *vethRun
	if o.net == netVeth {
		var vc *vethConfig
		veth, vc, err = prepareVeth(o)
		if err != nil {
			return fail(exitFailed, err)
		}
		defer veth.close(logger)
		cfg.Veth = vc
	}
	files := make([]*os.File, len(socks))
	for i, s := range socks {
		files[i] = s.File
		cfg.Sockets = append(cfg.Sockets, socketConfig{Proto: string(s.Proto), Host: s.Addr, Inside: s.Inside})
	}
	blob, err := json.Marshal(cfg)
	if err != nil {
		return fail(exitFailed, err)
	}
	self, err := os.Executable()
	if err != nil {
		return fail(exitFailed, fmt.Errorf("finding nsbind's own binary: %w", err))
	}

	// Catch the signals to forward before the helper exists, so none is
	// lost (or kills nsbind) in between.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append(forwardedSignals, syscall.SIGCONT)...)
	defer signal.Stop(sigs)

	h, err := nsutil.Start(nsutil.Config{
		Path:   self,
		Args:   []string{"nsbind-init"},
		Env:    append(os.Environ(), roleEnv+"="+roleInit, configEnv+"="+string(blob)),
		Files:  files,
		Root:   o.root,
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Logger: logger,
	})
	if err != nil {
		return fail(exitFailed, err)
	}
	// The helper holds the sockets now; when it ends, the ports close.
	forward.CloseAll(socks)
	socks = nil
	if cfg.Foreground {
		defer takeTerminal()
	}
	// --net=veth: the pair and the host's rules, then the helper goes on.
	if veth != nil {
		if err := veth.attach(h, cfg.Sockets, o.quiet, logger, stderr); err != nil {
			h.Kill()
			<-h.Done()
			return fail(exitFailed, err)
		}
	}

	// --direct: host sockets the server did not take are relayed from here.
	relayCtx, stopHostRelays := context.WithCancel(context.Background())
	defer stopHostRelays()
	hostRelays := newHostRelays(relayCtx, h.Ctrl, cfg, logger)

	received := make(chan nsutil.Msg, 4)
	go func() {
		defer close(received)
		for {
			m, files, err := h.Ctrl.Recv()
			handled := err == nil && hostRelays.handle(m, files)
			for _, f := range files {
				f.Close()
			}
			if handled {
				continue
			}
			if err != nil {
				return
			}
			if m.Type == nsutil.MsgSockets {
				supplySockets(h.Ctrl, m, logger)
				continue
			}
			received <- m
		}
	}()

	msgs := received
	var (
		result  = -1
		started bool
		stopped bool
		stats   = statsCollector{}
	)
	// record takes the helper's report of how the run ended; it may come
	// before or after the helper exits.
	record := func(m nsutil.Msg) {
		switch m.Type {
		case nsutil.MsgFail:
			fmt.Fprintf(stderr, "nsbind: %s\n", m.Text)
			result = m.Code
		case nsutil.MsgExit:
			result = m.Code
		case nsutil.MsgStats:
			stats.add(m)
		}
	}
	for {
		select {
		case sig := <-sigs:
			s := sig.(syscall.Signal)
			if s == syscall.SIGCONT {
				if stopped {
					stopped = false
					h.Ctrl.Send(nsutil.Msg{Type: nsutil.MsgContinue, Foreground: cfg.Foreground && terminalIsOurs()})
				}
				continue
			}
			h.Ctrl.Send(nsutil.Msg{Type: nsutil.MsgSignal, Signal: int(s)})
		case m, ok := <-msgs:
			if !ok {
				msgs = nil // the helper's end is closed; wait for it to exit
				continue
			}
			switch m.Type {
			case nsutil.MsgReady:
				started = true
				if !o.quiet {
					for _, c := range cfg.Sockets {
						fmt.Fprintf(stderr, "nsbind: %s → :%d/%s\n", c.Host, c.Inside, c.Proto)
					}
				}
				if o.portsFile != "" {
					if err := writePortsFile(o.portsFile, cfg.Sockets); err != nil {
						logger.Error(err.Error())
					}
				}
			case nsutil.MsgFail, nsutil.MsgExit, nsutil.MsgStats:
				record(m)
			case nsutil.MsgStopped:
				// The server was stopped (Ctrl-Z): stop nsbind too, so the
				// shell sees its job stopped and can continue it.
				stopped = true
				if cfg.Foreground {
					takeTerminal()
				}
				syscall.Kill(os.Getpid(), syscall.SIGSTOP)
			}
		case <-h.Done():
			// Take what the helper sent before it ended.
			for m := range received {
				record(m)
			}
			if o.stats && started {
				stats.print(stderr, cfg.Sockets)
			}
			if result >= 0 {
				return result
			}
			st, werr := h.State()
			what := "the helper ended unexpectedly"
			if st != nil {
				what += " (" + st.String() + ")"
			} else if werr != nil {
				what += ": " + werr.Error()
			}
			if started {
				what += " while the server was running"
			}
			fmt.Fprintf(stderr, "nsbind: %s\n", what)
			return exitFailed
		}
	}
}

// terminalIsOurs reports whether stdin is a terminal whose foreground
// process group is nsbind's, as when a shell runs nsbind as a foreground
// job. The server then gets the terminal.
func terminalIsOurs() bool {
	pgrp, err := unix.IoctlGetInt(0, unix.TIOCGPGRP)
	return err == nil && pgrp == syscall.Getpgrp()
}

// takeTerminal makes nsbind's process group the terminal's foreground group
// again, after the server had it.
func takeTerminal() {
	// tcsetpgrp from a background group raises SIGTTOU, which would stop
	// nsbind: ignore it for the call.
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	unix.IoctlSetPointerInt(0, unix.TIOCSPGRP, syscall.Getpgrp())
}

// portEntry is one host socket in the --ports-file.
type portEntry struct {
	Proto      string `json:"proto"`
	InsidePort uint16 `json:"inside_port"`
	HostIP     string `json:"host_ip"`
	HostPort   uint16 `json:"host_port"`
}

// writePortsFile writes the host sockets to path atomically: a script that
// sees the file sees all of it.
func writePortsFile(path string, socks []socketConfig) error {
	entries := make([]portEntry, 0, len(socks))
	for _, s := range socks {
		entries = append(entries, portEntry{Proto: s.Proto, InsidePort: s.Inside, HostIP: s.Host.Addr().String(), HostPort: s.Host.Port()})
	}
	b, err := json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".nsbind-ports-*")
	if err != nil {
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing --ports-file: %w", err)
	}
	return nil
}
