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
func (h *helper) supervise(srv *nsutil.Server) int {
	msgs := h.receive()
	for {
		select {
		case st := <-srv.Exited():
			// Whatever the server left running goes with it, so every
			// socket it had closes and the relays see the end.
			srv.KillAll()
			h.stop()
			waitTimeout(&h.relays, drainTimeout)
			h.out.logTotals(h.logger)
			sendStats(h.ctrl, h.cfg.Sockets, h.stats, h.logger)
			h.ctrl.Send(nsutil.Exit{Code: st.ExitCode(), Signal: int(st.Signal)})
			return 0
		case <-srv.Stopped():
			h.ctrl.Send(nsutil.Stopped{})
		case m, ok := <-msgs:
			if !ok {
				// The parent is gone: so is the run.
				srv.KillAll()
				return exitFailed
			}
			switch m := m.(type) {
			case nsutil.Signal:
				if err := srv.Signal(syscall.Signal(m.Signal)); err != nil {
					h.logger.Debug("forwarding a signal", "signal", m.Signal, "err", err)
				}
			case nsutil.Continue:
				if err := srv.Continue(m.Foreground); err != nil {
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
