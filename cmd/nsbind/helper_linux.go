package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
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

	ctx, stopRelays := context.WithCancel(context.Background())
	defer stopRelays()
	var relays sync.WaitGroup
	// Counters per host socket, sent to the parent when the server ends.
	stats := make([]*forward.Stats, len(cfg.Sockets))
	for i, sc := range cfg.Sockets {
		stats[i] = new(forward.Stats)
		f := os.NewFile(uintptr(nsutil.FirstFD+i), sc.Host.String())
		serve, err := relayFor(sc, f, cfg, stats[i], logger)
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
	srv, err := nsutil.StartServer(nsutil.ServerConfig{
		Path:       "/proc/self/exe",
		Args:       append([]string{"nsbind-exec"}, cfg.Command...),
		Env:        execEnv,
		Foreground: cfg.Foreground,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
	})
	if err != nil {
		return fail(nsutil.FailureCode(err), err)
	}
	ctrl.Send(nsutil.Msg{Type: nsutil.MsgReady, Pid: srv.Pid})

	msgs := make(chan nsutil.Msg, 4)
	go func() {
		defer close(msgs)
		for {
			m, files, err := ctrl.Recv()
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
			}
		}
	}
}

// relayFor makes the relay of one inherited host socket.
func relayFor(sc socketConfig, f *os.File, cfg helperConfig, stats *forward.Stats, logger *slog.Logger) (func(context.Context) error, error) {
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
		r := &forward.TCPRelay{Port: sc.Inside, Dialer: forward.LoopbackDialer{}, Wait: cfg.ConnectTimeout, Logger: logger, Stats: stats}
		return func(ctx context.Context) error { return r.Serve(ctx, tl) }, nil
	}
	return nil, fmt.Errorf("using host socket %s: protocol %s is not supported yet", sc.Host, sc.Proto)
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
	err := nsutil.ExecServer(os.Args[1:], serverEnv(os.Environ()), keep)
	return nsutil.ReportExecError(err)
}
