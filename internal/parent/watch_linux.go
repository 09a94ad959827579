package parent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/nsbind/nsbind/nsutil"
)

// watch runs until the helper has exited: it passes signals on to the
// server, takes the helper's reports, and returns the exit status.
func (r *run) watch(sigs <-chan os.Signal) int {
	received := r.receive()
	msgs := received
	for {
		select {
		case sig := <-sigs:
			r.passOn(sig.(syscall.Signal))
		case m, ok := <-msgs:
			if !ok {
				msgs = nil // the helper's end is closed; wait for it to exit
				continue
			}
			r.take(m)
		case <-r.h.Done():
			// Take what the helper sent before it ended.
			for m := range received {
				r.take(m)
			}
			return r.end()
		}
	}
}

// receive receives from the helper on a goroutine of its own. It answers
// what needs no state of the run at once (host sockets for outbound
// connections, the host relays of --direct) and hands the rest to the
// channel it returns, which closes when the helper's end is closed.
func (r *run) receive() <-chan nsutil.Payload {
	msgs := make(chan nsutil.Payload, 4)
	go func() {
		defer close(msgs)
		for {
			m, files, err := r.h.Ctrl.Recv()
			if err != nil {
				var me *nsutil.MessageError
				if !errors.As(err, &me) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
					return
				}
				r.Logger.Error(err.Error())
				continue
			}
			switch m := m.(type) {
			case nsutil.WantSockets:
				supplySockets(r.h.Ctrl, m, r.Logger)
			case nsutil.Relay:
				r.relays.start(m, files)
			case nsutil.Unrelay:
				r.relays.stop(m)
			default:
				msgs <- m
			}
			closeAll(files)
		}
	}()
	return msgs
}

// passOn passes a signal nsbind got on to the server; SIGCONT continues
// a stopped server, with the terminal if nsbind has it.
func (r *run) passOn(s syscall.Signal) {
	if s != syscall.SIGCONT {
		r.h.Ctrl.Send(nsutil.Signal{Signal: int(s)})
		return
	}
	if r.stopped {
		r.stopped = false
		r.h.Ctrl.Send(nsutil.Continue{Foreground: r.cfg.Foreground && terminalIsOurs()})
	}
}

// take takes one report of the helper. How the run ended (Fail, Exit) may
// come before or after the helper exits.
func (r *run) take(m nsutil.Payload) {
	switch m := m.(type) {
	case nsutil.Ready:
		r.started = true
		r.announce()
	case nsutil.Fail:
		err := m.Err.Err()
		if err == nil {
			err = errors.New("the helper failed and did not say why")
		}
		fmt.Fprintf(r.Stderr, "nsbind: %s\n", r.Describe(err))
		r.result = m.Code
	case nsutil.Exit:
		r.result = m.Code
	case nsutil.Stats:
		r.stats.add(m)
	case nsutil.Stopped:
		// The server was stopped (Ctrl-Z): stop nsbind too, so the shell
		// sees its job stopped and can continue it.
		r.stopped = true
		if r.cfg.Foreground {
			takeTerminal()
		}
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	default:
		r.Logger.Error("control channel: unexpected message from the helper", "type", m.MsgType())
	}
}

// announce prints one line per published socket and writes the ports
// file, once the server runs.
func (r *run) announce() {
	if !r.Quiet {
		for _, c := range nsutil.Announced(r.cfg.Sockets) {
			fmt.Fprintf(r.Stderr, "nsbind: %s → :%d/%s\n", c.Host, c.Inside, c.Proto)
		}
	}
	if r.PortsFile != "" {
		if err := writePortsFile(r.PortsFile, r.cfg.Sockets); err != nil {
			r.Logger.Error(err.Error())
		}
	}
}

// end is the exit status once the helper has exited: the server's, or
// exitFailed with why when the helper ended without saying.
func (r *run) end() int {
	if r.Stats && r.started {
		r.stats.print(r.Stderr, r.cfg.Sockets)
	}
	if r.result >= 0 {
		return r.result
	}
	st, werr := r.h.State()
	what := "the helper ended unexpectedly"
	if st != nil {
		what += " (" + st.String() + ")"
	} else if werr != nil {
		what += ": " + werr.Error()
	}
	if r.started {
		what += " while the server was running"
	}
	fmt.Fprintf(r.Stderr, "nsbind: %s\n", what)
	return exitFailed
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
