package helper

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/nsbind/nsbind/nsutil"
)

// drainTimeout bounds how long the helper, once the server has ended, waits
// for the relays to deliver what the server sent before it exits.
const drainTimeout = 5 * time.Second

// supervise runs until the server ends: it passes on the parent's signals,
// reports the server's stops, and at the end stops everything, sends the
// counters and the exit status, and returns 0. When the parent is gone it
// kills the server and returns exitFailed.
//
// A command that exits 0 while other processes of the run still run has
// put itself in the background (nginx's "daemon on", apachectl start): the
// helper then serves until the last of them has exited, passes the
// parent's signals to all of them, and reports the status of the last one
// reaped. A command that fails ends the run at once, whatever it left.
func (h *helper) supervise(srv *nsutil.Server) int {
	msgs := h.receive()
	// daemon is set once the command has gone to the background; empty
	// then delivers the end of the last process of the run.
	var daemon bool
	var empty <-chan nsutil.Status
	for {
		select {
		case st := <-srv.Exited():
			if st.ExitCode() == 0 {
				if n := srv.Remaining(); n > 0 {
					daemon, empty = true, srv.Empty()
					h.ctrl.Send(nsutil.Daemonized{Processes: n})
					continue
				}
			}
			return h.end(srv, st)
		case st := <-empty:
			return h.end(srv, st)
		case <-srv.Stopped():
			h.ctrl.Send(nsutil.Stopped{Terminal: srv.HasTerminal()})
		case m, ok := <-msgs:
			if !ok {
				// The parent is gone: so is the run.
				srv.KillAll()
				return exitFailed
			}
			switch m := m.(type) {
			case nsutil.Signal:
				h.signal(srv, syscall.Signal(m.Signal), daemon)
			case nsutil.Continue:
				if daemon {
					srv.SignalAll(syscall.SIGCONT)
				} else if err := srv.Continue(m.Foreground); err != nil {
					h.logger.Debug("continuing the server", "err", err)
				}
			case nsutil.Unrelayed:
				h.dir.gotUnrelayed(m)
			default:
				h.logger.Error("control channel: unexpected message from nsbind", "type", m.MsgType())
			}
		}
	}
}

// signal passes on a signal nsbind got: to the server, or once it has gone
// to the background to every process of the run. SIGTSTP then becomes
// SIGSTOP, reported as a stop at once: daemons sit in process groups
// without a terminal (orphaned, in POSIX's words), where the kernel
// discards SIGTSTP.
func (h *helper) signal(srv *nsutil.Server, sig syscall.Signal, daemon bool) {
	if !daemon {
		if err := srv.Signal(sig); err != nil {
			h.logger.Debug("forwarding a signal", "signal", sig, "err", err)
		}
		return
	}
	if sig == syscall.SIGTSTP {
		srv.SignalAll(syscall.SIGSTOP)
		h.ctrl.Send(nsutil.Stopped{})
		return
	}
	srv.SignalAll(sig)
}

// end ends the run with the status st: whatever the server left running
// goes with it, so every socket it had closes and the relays see the end;
// then the counters and the status go to the parent.
func (h *helper) end(srv *nsutil.Server, st nsutil.Status) int {
	srv.KillAll()
	h.stop()
	waitTimeout(&h.relays, drainTimeout)
	h.out.logTotals(h.logger)
	sendStats(h.ctrl, h.cfg.Sockets, h.stats, h.logger)
	h.ctrl.Send(nsutil.Exit{Code: st.ExitCode(), Signal: int(st.Signal)})
	return 0
}

// receive receives from the parent on a goroutine of its own: host sockets
// go to the outbound pool at once, everything else to the channel it
// returns, which closes when the parent is gone.
func (h *helper) receive() <-chan nsutil.Payload {
	msgs := make(chan nsutil.Payload, 4)
	go func() {
		defer close(msgs)
		for {
			m, files, err := h.ctrl.Recv()
			if err != nil {
				if gone(err) {
					return
				}
				h.logger.Error(err.Error())
				continue
			}
			if s, ok := m.(nsutil.Sockets); ok {
				h.out.add(s, files)
				continue
			}
			if h.instanceRequest(m, files) {
				continue
			}
			closeAll(files)
			msgs <- m
		}
	}()
	return msgs
}

// gone reports whether err means the other end of the channel is gone,
// rather than one bad message.
func gone(err error) bool {
	var me *nsutil.MessageError
	return !errors.As(err, &me) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
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
