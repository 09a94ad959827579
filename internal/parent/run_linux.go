package parent

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// Exit statuses of nsbind's own failures; otherwise nsbind exits with the
// server's status.
const exitFailed = 125

// run is one nsbind run, seen from the parent.
type run struct {
	Options
	bindings []forward.Binding
	cfg      nsutil.HelperConfig
	ids      nsutil.IDPlan
	env      []string
	h        *nsutil.Helper
	veth     *vethRun
	relays   *hostRelays
	// inherited are the sockets of socket activation until they are
	// claimed (activation_linux.go).
	inherited []forward.ActivatedSocket

	inst *instanceHandler

	// What the helper reported: the exit status (-1: none yet), whether
	// the server started and is stopped now, the counters.
	result  int
	started bool
	stopped bool
	stats   statsCollector
}

// Run does the parent's part of a run and returns nsbind's exit status.
func Run(o Options) int {
	r := &run{Options: o, result: -1}
	// nsbind's stderr may be a pipe that closes before the run ends (| head):
	// a write to a closed fd 2 must fail with EPIPE, not end nsbind with
	// SIGPIPE (Go's default unless the program handles the signal), which
	// would take the server with it. It stays handled to the end of the
	// process (the last lines are written after Run returns); the server
	// gets the default back at exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	// Sockets passed by socket activation (LISTEN_FDS) first, before
	// anything opens a descriptor.
	if err := r.takeInherited(); err != nil {
		return r.fail(err)
	}
	// Nothing starts before the specs and the command are known good.
	if err := r.plan(); err != nil {
		return r.fail(err)
	}
	// Descriptors nsbind inherited are not for the helper or the server.
	nsutil.CloseOnExecFrom(3)
	socks, err := r.bindHostSockets()
	if err != nil {
		return r.fail(err)
	}
	defer forward.CloseAll(socks)
	// The host ports are known now: the ports file is there before the
	// server starts, and goes with the run, so no script reads a stale one.
	if r.PortsFile != "" {
		remove, err := writePortsFile(r.PortsFile, r.cfg.Sockets)
		if err != nil {
			return r.fail(err)
		}
		defer remove()
	}

	// The name is taken (or refused) before anything starts; the commands
	// are answered once the helper runs (instance_linux.go).
	if r.inst, err = r.nameInstance(socks); err != nil {
		return r.fail(err)
	}
	defer r.inst.close()
	// The server accepts on the host sockets itself on the native path
	// and with --socket-activation: only the socket table shows those.
	if r.Stats && (r.cfg.Direct || r.cfg.SocketActivation) {
		r.stats.primeNative(r.cfg.Sockets)
	}
	if r.Veth {
		if err := r.prepareVeth(); err != nil {
			return r.fail(err)
		}
		defer r.veth.close(r.Logger)
	}
	// Catch the signals to pass on before the helper exists, so none is
	// lost (or kills nsbind) in between.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append(nsutil.ForwardedSignals(), syscall.SIGCONT)...)
	defer signal.Stop(sigs)
	if err := r.startHelper(socks); err != nil {
		return r.fail(err)
	}
	// The helper holds the sockets now; when it ends, the ports close.
	forward.CloseAll(socks)
	socks = nil
	r.inst.serve(r.h)
	if r.cfg.Foreground {
		defer takeTerminal()
	}
	if r.veth != nil {
		if err := r.attachVeth(); err != nil {
			r.h.Kill()
			<-r.h.Done()
			return r.fail(err)
		}
	}
	ctx, stopHostRelays := context.WithCancel(context.Background())
	defer stopHostRelays()
	r.relays = newHostRelays(ctx, r.h.Ctrl, r.cfg, r.Logger)
	r.stats.relays = r.relays
	if r.Stats && (r.cfg.Direct || r.cfg.SocketActivation) {
		r.stats.countNative(ctx)
	}
	return r.watch(sigs)
}

// fail prints err as the one line of a failed run and returns the status:
// 126 or 127 for a command that cannot run, 125 otherwise.
func (r *run) fail(err error) int {
	fmt.Fprintf(r.Stderr, "nsbind: %s\n", r.Describe(err))
	return nsutil.FailureCode(err)
}

// plan checks the specs, the outbound flags and the command, and makes
// the helper's configuration but for its sockets.
func (r *run) plan() error {
	var specs []forward.Spec
	for _, p := range r.Publish {
		s, err := forward.ParseSpec(p)
		if err != nil {
			return err
		}
		specs = append(specs, s)
	}
	bindings, err := forward.Expand(specs)
	if err != nil {
		return err
	}
	out, err := outboundFor(r.ToHost, r.Isolated, r.ResolvConf, bindings)
	if err != nil {
		return err
	}
	// Fail on a command that cannot run before anything starts.
	if _, err := nsutil.LookPath(r.Command[0]); err != nil {
		return err
	}
	if err := r.planIDs(); err != nil {
		return err
	}
	r.bindings = bindings
	r.cfg = nsutil.HelperConfig{
		IDs:            nsutil.IDsConfig{UID: r.ids.UID, GID: r.ids.GID, Switch: r.ids.Switch},
		Command:        r.Command,
		Root:           r.Root,
		Foreground:     terminalIsOurs(),
		LogLevel:       r.LogLevel,
		ConnectTimeout: r.ConnectTimeout,
		SourceAddress:  r.SourceAddress,
		ProxyProtocol:  r.ProxyProtocol,
		Outbound:       out,
		UDPTimeout:     r.UDPTimeout,
		UDPMaxFlows:    r.UDPMaxFlows,
		Direct:         r.Direct && len(bindings) > 0,
		DirectUDP:      r.Direct && r.DirectUDP,
		CPUProfile:     r.CPUProfile,
		Confine:        r.Confine,
	}
	return nil
}

// fdSlack is what the parent and the helper need beyond the host sockets:
// standard descriptors, the control channel, the runtime's own, the first
// connections.
const fdSlack = 16

// bindHostSockets binds every host socket, after checking that the
// descriptor limit leaves room for them in the parent and the helper.
func (r *run) bindHostSockets() ([]forward.HostSocket, error) {
	// Go's runtime has raised the soft limit to the hard one already;
	// nsbind itself never raises the hard limit.
	n := len(r.bindings)
	var lim unix.Rlimit
	limErr := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if r.cfg.Direct && !r.SocketActivation {
		native := n + nativeCatchAlls(r.bindings)
		if limErr == nil && uint64(native)+fdSlack > lim.Cur && uint64(n)+fdSlack <= lim.Cur {
			// The native path's catch-alls do not fit under the limit,
			// the relay's sockets do: relay rather than fail.
			if !r.Quiet {
				fmt.Fprintf(r.Stderr, "nsbind: relaying the published ports: the native path needs %d host sockets, more than the descriptor limit allows (%d, ulimit -Hn); the relay needs %d\n", native, lim.Cur, n)
			}
			r.cfg.Direct, r.cfg.DirectUDP = false, false
		} else {
			n = native
		}
	}
	if limErr == nil && uint64(n)+fdSlack > lim.Cur {
		return nil, fmt.Errorf("publishing %d host sockets needs about %d descriptors, but nsbind may open at most %d (ulimit -Hn): raise the hard limit, e.g. as root: prlimit --nofile=%d:%d -- nsbind run ..., or LimitNOFILE=%d in a systemd unit",
			n, n+fdSlack, lim.Cur, 2*n+1024, 2*n+1024, 2*n+1024)
	}
	socks, err := r.bindPublished()
	if err != nil {
		return nil, err
	}
	for _, s := range socks {
		r.cfg.Sockets = append(r.cfg.Sockets, nsutil.SocketConfig{Proto: string(s.Proto), Host: s.Addr, Inside: s.Inside,
			Role: string(s.Role), Hidden: s.Hidden})
	}
	return socks, nil
}

// nativeCatchAlls is the number of catch-all sockets the native path binds
// beside the bindings' own (forward.Bind): one per published TCP port but
// for a spec of one IPv6 address.
func nativeCatchAlls(bs []forward.Binding) int {
	n := 0
	for _, b := range bs {
		a := b.Host.Addr()
		if b.Proto == forward.TCP && a.Is4() {
			n++ // the first of the default pair, 0.0.0.0, or one IPv4 address
		} else if b.Proto == forward.TCP && a.IsUnspecified() {
			n++ // [::]: its catch-all, and the IPv4 socket beside it
		}
	}
	return n
}
