package parent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
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
			case nsutil.PortDone, nsutil.StatsNow, nsutil.ExecStarted, nsutil.ExecExit:
				r.inst.take(m)
			default:
				msgs <- m
			}
			closeAll(files)
		}
	}()
	return msgs
}

// passOn passes a signal nsbind got on to the server. SIGCONT continues a
// stopped server, with the terminal if nsbind has it (a shell's fg
// continues the rest of the job itself); it gives a running server the
// terminal again too, when a shell brings nsbind back to the foreground
// after a "bg".
func (r *run) passOn(s syscall.Signal) {
	if s != syscall.SIGCONT {
		r.h.Ctrl.Send(nsutil.Signal{Signal: int(s)})
		return
	}
	foreground := r.cfg.Foreground && terminalIsOurs()
	if !r.stopped && !foreground {
		return
	}
	r.stopped = false
	r.h.Ctrl.Send(nsutil.Continue{Foreground: foreground})
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
		// The server was stopped (Ctrl-Z): stop nsbind's job too, so the
		// shell sees it stopped, takes the terminal and can continue it.
		r.stopped = true
		if m.Terminal {
			takeTerminal()
		}
		stopJob()
	case nsutil.Daemonized:
		if !r.Quiet {
			what, until := "processes", "they exit"
			if m.Processes == 1 {
				what, until = "process", "it exits"
			}
			fmt.Fprintf(r.Stderr, "nsbind: %s exited 0 leaving %d %s running (it went to the background); serving until %s\n",
				filepath.Base(r.Command[0]), m.Processes, what, until)
		}
		// The terminal's group is gone with the command: take it, so
		// Ctrl-C and Ctrl-Z reach nsbind, which passes them on.
		if r.cfg.Foreground {
			takeTerminal()
		}
	default:
		r.Logger.Error("control channel: unexpected message from the helper", "type", m.MsgType())
	}
}

// announce prints one line per published socket, once the server runs.
// (The ports file is written before it starts: Run.)
func (r *run) announce() {
	if !r.Quiet {
		if name := r.inst.name(); name != "" {
			fmt.Fprintf(r.Stderr, "nsbind: instance %s (nsbind ps, nsbind exec %s COMMAND)\n", name, name)
		}
		for _, c := range nsutil.Announced(r.cfg.Sockets) {
			fmt.Fprintf(r.Stderr, "nsbind: %s → :%d/%s\n", c.Host, c.Inside, c.Proto)
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
