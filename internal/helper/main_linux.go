package helper

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/internal/logline"
	"github.com/nsbind/nsbind/nsutil"
)

// exitFailed is the helper's status when the run failed before the server
// started (the parent prints why).
const exitFailed = 125

// helper is one run of the helper.
type helper struct {
	ctrl   *nsutil.Ctrl
	cfg    nsutil.HelperConfig
	logger *slog.Logger
	// ctx ends the relays, the outbound listeners and the director;
	// relays counts their goroutines.
	ctx    context.Context
	stop   context.CancelFunc
	relays sync.WaitGroup
	dialer insideDialer
	// stats are the counters per published host socket.
	stats []*forward.Stats
	out   *outbound
	dir   *director
	// logOut is the queue the logger writes through to stderr.
	logOut *logline.Writer
	// budget bounds the descriptors of every UDP flow, in and out, so
	// that a flood of them leaves some to TCP connections.
	budget *forward.FlowBudget

	// srv is the server once it runs; inst the state of the instance
	// commands' requests (instance_linux.go).
	srv  *nsutil.Server
	inst instance
}

// Main is the helper (argv[0] nsutil.RoleInit). It returns its exit
// status; the server's status goes to the parent over the control channel.
func Main() int {
	h, err := connect()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	defer h.logOut.Close(time.Second) // last: after what the end logs
	defer h.stop()
	// The first act: nothing before this uses an id. The parent has
	// written the maps before it sent the configuration; as host root's
	// child the helper is still kernel uid 0 until it changes here.
	if err := nsutil.EnterIDs(h.cfg.IDs.Plan(), syscall.SIGKILL); err != nil {
		return h.fail(exitFailed, fmt.Errorf("taking the run's ids: %w", err))
	}
	if stop := startProfile(h.cfg.CPUProfile, h.logger); stop != nil {
		defer stop()
	}
	if err := h.setUpNamespace(); err != nil {
		return h.fail(exitFailed, err)
	}
	h.dialer = chooseDialer(h.cfg, h.logger)
	if err := h.startOutbound(); err != nil {
		return h.fail(exitFailed, err)
	}
	if err := h.relayPublished(); err != nil {
		return h.fail(exitFailed, err)
	}
	srv, err := h.startServer()
	if err != nil {
		return h.fail(nsutil.FailureCode(err), err)
	}
	h.srv = srv
	h.ctrl.Send(nsutil.Ready{Pid: srv.Pid})
	return h.supervise(srv)
}

// connect opens the control channel on its descriptor and receives the
// configuration, its first message. Without both this is no helper nsbind
// started.
func connect() (*helper, error) {
	ctrl, err := nsutil.NewCtrl(os.NewFile(nsutil.CtrlFD, "ctrl"))
	if err != nil {
		return nil, err
	}
	cfg, err := ctrl.RecvConfig()
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	// The helper's stderr is the user's, as the parent's is: a closed one
	// must not end the helper (SIGPIPE, which Go lets kill a process that
	// writes to fd 2 unless it handles the signal), a stalled one must not
	// hold up a relay (the logger writes through a queue).
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	level, _ := logline.ParseLevel(cfg.LogLevel)
	logOut := logline.NewWriter(os.Stderr)
	h := &helper{ctrl: ctrl, cfg: cfg, logger: logline.New(logOut, level), logOut: logOut,
		budget: forward.FlowBudgetFromLimit(len(cfg.Sockets))}
	h.ctx, h.stop = context.WithCancel(context.Background())
	h.stats = make([]*forward.Stats, len(cfg.Sockets))
	for i := range h.stats {
		h.stats[i] = new(forward.Stats)
	}
	return h, nil
}

// fail tells the parent why the run failed, with the step and errno for
// the parent to describe, and returns code.
func (h *helper) fail(code int, err error) int {
	h.ctrl.Send(nsutil.Fail{Code: code, Err: nsutil.NewStepError(err)})
	return code
}

// setUpNamespace makes the namespaces usable: a fresh /proc, lo up and
// every port bindable, and with --net=veth eth0 once the parent has made
// the pair.
func (h *helper) setUpNamespace() error {
	// The parent forwards the signals meant for the server over the
	// control channel. The helper catches them itself only so that one
	// sent to nsbind's whole process group (Ctrl-C when the server does not
	// own the terminal) does not kill it; the parent forwards those too.
	signal.Notify(make(chan os.Signal, 1), nsutil.ForwardedSignals()...)
	if os.Getpid() == 1 {
		if err := nsutil.MountProc(); err != nil {
			h.logger.Debug("keeping the host's /proc", "err", err)
		} else {
			h.logger.Debug("mounted a /proc of the PID namespace")
		}
	}
	if err := nsutil.SetupLoopback(); err != nil {
		return fmt.Errorf("setting up the network namespace: %w", err)
	}
	h.logger.Debug("lo up, every port bindable", "sysctl", "net.ipv4.ip_unprivileged_port_start=0")
	if h.cfg.Veth == nil {
		if err := nsutil.UseLoopbackCongestionControl(); err != nil {
			h.logger.Debug("keeping the default TCP congestion control", "err", err)
		} else {
			h.logger.Debug("reno for TCP on lo", "sysctl", "net.ipv4.tcp_congestion_control=reno")
		}
	}
	if v := h.cfg.Veth; v != nil {
		_, files, err := nsutil.Expect[nsutil.VethReady](h.ctrl)
		closeAll(files)
		if err != nil {
			return fmt.Errorf("waiting for the veth: %w", err)
		}
		if err := nsutil.SetupVethInside(v.Inside4, v.Gateway4, v.Inside6, v.Gateway6, h.cfg.Sockets); err != nil {
			return fmt.Errorf("setting up the network namespace: %w", err)
		}
		h.logger.Debug("veth up inside", "inside4", v.Inside4, "gateway4", v.Gateway4, "inside6", v.Inside6, "gateway6", v.Gateway6)
	}
	return nil
}

// startOutbound opens the way out for programs inside (outbound_linux.go).
func (h *helper) startOutbound() error {
	out, err := startOutbound(h.ctx, h.cfg.Outbound, h.ctrl, &h.relays, h.logger, h.budget)
	h.out = out
	return err
}

// relayPublished starts the relay of every published host socket; with
// --direct the director relays only those the server does not take, with
// --socket-activation the server takes them all.
func (h *helper) relayPublished() error {
	if h.cfg.Direct || h.cfg.SocketActivation {
		return nil
	}
	for i, sc := range h.cfg.Sockets {
		f := os.NewFile(uintptr(nsutil.FirstFD+i), sc.Host.String())
		serve, _, err := relayFor(sc, f, h.cfg, h.dialer, h.stats[i], h.logger, h.budget)
		f.Close()
		if err != nil {
			return err
		}
		h.serve(h.ctx, sc, serve)
	}
	return nil
}

// serve runs one relay on a goroutine counted in h.relays.
func (h *helper) serve(ctx context.Context, sc nsutil.SocketConfig, serve func(context.Context) error) {
	h.relays.Add(1)
	go func() {
		defer h.relays.Done()
		if err := serve(ctx); err != nil {
			h.logger.Error("relay stopped", "host", sc.Host, "err", err)
		}
	}()
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
