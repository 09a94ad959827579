package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// drainTimeout bounds how long the helper, once the server has ended, waits
// for the relays to deliver what the server sent before it exits.
const drainTimeout = 5 * time.Second

// helperMain is the helper ("init" role): it runs inside the new
// namespaces, sets them up, relays the published ports, supervises the
// server and reports to the parent over the control channel.
func helperMain() int {
	ctrl, err := nsutil.NewCtrl(os.NewFile(nsutil.CtrlFD, "ctrl"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	fail := func(code int, err error) int {
		ctrl.Send(nsutil.Msg{Type: nsutil.MsgFail, Code: code, Text: describe(err)})
		return code
	}
	cfg, err := loadHelperConfig()
	if err != nil {
		return fail(exitFailed, err)
	}
	level, _ := parseLevel(cfg.LogLevel)
	logger := newLogger(os.Stderr, level)
	if stop := startProfile(logger); stop != nil {
		defer stop()
	}

	// The parent forwards the signals meant for the server over the
	// control channel. The helper catches them itself only so that one
	// sent to nsbind's whole process group (Ctrl-C when the server does not
	// own the terminal) does not kill it; the parent forwards those too.
	signal.Notify(make(chan os.Signal, 1), forwardedSignals...)

	if os.Getpid() == 1 {
		if err := nsutil.MountProc(); err != nil {
			logger.Debug("keeping the host's /proc", "err", err)
		}
	}
	if err := nsutil.SetupLoopback(); err != nil {
		return fail(exitFailed, fmt.Errorf("setting up the network namespace: %w", err))
	}
	// --net=veth: eth0, once the parent has made the pair (veth_linux.go).
	if cfg.Veth != nil {
		if err := awaitVeth(ctrl, *cfg.Veth); err != nil {
			return fail(exitFailed, fmt.Errorf("setting up the network namespace: %w", err))
		}
	}

	dialer := chooseDialer(cfg, logger)

	ctx, stopRelays := context.WithCancel(context.Background())
	defer stopRelays()
	var relays sync.WaitGroup
	out, err := startOutbound(ctx, cfg.Outbound, ctrl, &relays, logger)
	if err != nil {
		return fail(exitFailed, err)
	}
	// Counters per host socket, sent to the parent when the server ends.
	stats := make([]*forward.Stats, len(cfg.Sockets))
	for i := range stats {
		stats[i] = new(forward.Stats)
	}
	for i, sc := range cfg.Sockets {
		if cfg.Direct {
			break // the director relays what the server does not take
		}
		f := os.NewFile(uintptr(nsutil.FirstFD+i), sc.Host.String())
		serve, err := relayFor(sc, f, cfg, dialer, stats[i], logger)
		f.Close()
		if err != nil {
			return fail(exitFailed, err)
		}
		relays.Add(1)
		go func() {
			defer relays.Done()
			if err := serve(ctx); err != nil {
				logger.Error("relay stopped", "host", sc.Host, "err", err)
			}
		}()
	}

	execEnv := append(serverEnv(os.Environ()), roleEnv+"="+roleExec)
	if cfg.Root {
		execEnv = append(execEnv, keepCapEnv+"=1")
	}
	// --direct: the exec step sends its bind filter's listener to the
	// director (direct_linux.go).
	var (
		dir                *director
		notify, notifyExec *os.File
		execFiles          []*os.File
	)
	if cfg.Direct {
		dir = newDirector(ctx, cfg, ctrl, logger, &relays, dialer, stats)
		if notify, notifyExec, err = nsutil.BindNotifyPair(); err != nil {
			return fail(exitFailed, err)
		}
		execEnv = append(execEnv, directEnv+"=1")
		execFiles = append(execFiles, notifyExec)
	}
	srv, err := nsutil.StartServer(nsutil.ServerConfig{
		Path:       "/proc/self/exe",
		Args:       append([]string{"nsbind-exec"}, cfg.Command...),
		Env:        execEnv,
		Foreground: cfg.Foreground,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: execFiles,
	})
	if err != nil {
		return fail(nsutil.FailureCode(err), err)
	}
	if dir != nil {
		notifyExec.Close()
		dir.start(notify)
	}
	ctrl.Send(nsutil.Msg{Type: nsutil.MsgReady, Pid: srv.Pid})

	msgs := make(chan nsutil.Msg, 4)
	go func() {
		defer close(msgs)
		for {
			m, files, err := ctrl.Recv()
			if err == nil && m.Type == nsutil.MsgSockets {
				out.add(m, files)
				continue
			}
			for _, f := range files {
				f.Close()
			}
			if err != nil {
				return
			}
			msgs <- m
		}
	}()
	for {
		select {
		case st := <-srv.Exited():
			// Whatever the server left running goes with it, so every
			// socket it had closes and the relays see the end.
			srv.KillAll()
			stopRelays()
			waitTimeout(&relays, drainTimeout)
			out.logTotals(logger)
			sendStats(ctrl, cfg.Sockets, stats, logger)
			ctrl.Send(nsutil.Msg{Type: nsutil.MsgExit, Code: st.ExitCode(), Signal: int(st.Signal)})
			return 0
		case <-srv.Stopped():
			ctrl.Send(nsutil.Msg{Type: nsutil.MsgStopped})
		case m, ok := <-msgs:
			if !ok {
				// The parent is gone: so is the run.
				srv.KillAll()
				return exitFailed
			}
			switch m.Type {
			case nsutil.MsgSignal:
				if err := srv.Signal(syscall.Signal(m.Signal)); err != nil {
					logger.Debug("forwarding a signal", "signal", m.Signal, "err", err)
				}
			case nsutil.MsgContinue:
				if err := srv.Continue(m.Foreground); err != nil {
					logger.Debug("continuing the server", "err", err)
				}
			case nsutil.MsgUnrelayed:
				dir.gotUnrelayed(m)
			}
		}
	}
}

// relayFor makes the relay of one inherited host socket.
func relayFor(sc socketConfig, f *os.File, cfg helperConfig, dialer insideDialer, stats *forward.Stats, logger *slog.Logger) (func(context.Context) error, error) {
	switch forward.Proto(sc.Proto) {
	case forward.TCP:
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			ln.Close()
			return nil, fmt.Errorf("using host socket %s: not a TCP listener", sc.Host)
		}
		r := &forward.TCPRelay{Port: sc.Inside, Dialer: dialer, Wait: cfg.ConnectTimeout, Logger: logger, ProxyProtocol: cfg.ProxyProtocol, Stats: stats}
		return func(ctx context.Context) error { return r.Serve(ctx, tl) }, nil
	case forward.UDP:
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return nil, fmt.Errorf("using host socket %s: not a UDP socket", sc.Host)
		}
		r := &forward.UDPRelay{Port: sc.Inside, Dialer: dialer,
			Timeout: cfg.UDPTimeout, MaxFlows: cfg.UDPMaxFlows, Logger: logger, Stats: stats}
		return func(ctx context.Context) error { return r.Serve(ctx, uc) }, nil
	}
	return nil, fmt.Errorf("using host socket %s: protocol %s is not supported yet", sc.Host, sc.Proto)
}

// insideDialer opens the inside legs of TCP connections and UDP flows.
type insideDialer interface {
	forward.Dialer
	forward.PacketDialer
}

// chooseDialer chooses how the relays dial the server: from the client's
// own address where the kernel allows it (the server then sees the real
// client), from loopback otherwise, or when asked. With a PROXY protocol
// header the server reads the client from the header; UDP flows then still
// come from the client's address.
func chooseDialer(cfg helperConfig, logger *slog.Logger) insideDialer {
	if cfg.SourceAddress != "client" || len(cfg.Sockets) == 0 {
		return forward.LoopbackDialer{}
	}
	err := forward.CheckTransparent()
	if err == nil {
		err = nsutil.SetupReplyRouting()
	}
	if err != nil {
		logger.Warn("the server will see clients as coming from loopback: this kernel does not let nsbind keep their addresses", "err", err)
		return forward.LoopbackDialer{}
	}
	if cfg.ProxyProtocol != 0 {
		return proxyDialer{}
	}
	return forward.TransparentDialer{}
}

// proxyDialer dials TCP from loopback (the PROXY header carries the client)
// and UDP from the client's address.
type proxyDialer struct {
	forward.LoopbackDialer
	udp forward.TransparentDialer
}

func (d proxyDialer) DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error) {
	return d.udp.DialUDP(ctx, client, server)
}

// waitTimeout waits for wg, at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// execMain is the exec step ("exec" role): it drops nsbind's capabilities
// and environment and becomes the server.
func execMain() int {
	keep := os.Getenv(keepCapEnv) == "1"
	direct := os.Getenv(directEnv) == "1"
	err := nsutil.ExecServer(os.Args[1:], serverEnv(os.Environ()), keep, direct)
	return nsutil.ReportExecError(err)
}
