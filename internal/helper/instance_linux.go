package helper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"syscall"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// The helper's part of nsbind's instance commands (internal/instance; the
// parent serves them and asks the helper): host sockets published and
// unpublished while the run goes on (nsbind port), the counters now
// (nsbind stats, ps), and commands run beside the server (nsbind exec).
// Requests come from the receive goroutine (instanceRequest); an exec'd
// command is waited for on a goroutine of its own.

// instance is the state of those requests. Its methods may be called from
// any goroutine.
type instance struct {
	mu sync.Mutex
	// ports are the host sockets published by nsbind port add, by index
	// (nsutil.PortOpen).
	ports map[int]*addedPort
	// execs are the running commands of nsbind exec, by request ID.
	execs map[uint64]*nsutil.Child
}

// addedPort is one host socket nsbind port add published.
type addedPort struct {
	sc nsutil.SocketConfig
	// sock is the relay's *net.TCPListener or *net.UDPConn: closing it
	// stops the relay accepting; connections in flight go on.
	sock  io.Closer
	stats *forward.Stats
}

// instanceRequest takes a request of the instance commands, with its
// files, and reports whether m was one.
func (h *helper) instanceRequest(m nsutil.Payload, files []*os.File) bool {
	switch m := m.(type) {
	case nsutil.PortOpen:
		err := h.openPorts(m, files)
		h.ctrl.Send(nsutil.PortDone{ID: m.ID, Err: nsutil.NewStepError(err)})
	case nsutil.PortClose:
		closeAll(files)
		err := h.closePorts(m)
		h.ctrl.Send(nsutil.PortDone{ID: m.ID, Err: nsutil.NewStepError(err)})
	case nsutil.StatsAsk:
		closeAll(files)
		h.sendStatsNow(m.ID)
	case nsutil.ExecStart:
		// Starting waits for the exec step: not on the receive goroutine.
		go h.execCommand(m, files)
	case nsutil.ExecSignal:
		closeAll(files)
		h.inst.mu.Lock()
		c := h.inst.execs[m.ID]
		h.inst.mu.Unlock()
		if c != nil && m.Signal > 0 && m.Signal < 65 {
			c.Signal(syscall.Signal(m.Signal))
		}
	default:
		return false
	}
	return true
}

// openPorts starts the relays of the host sockets files, all or none. The
// files are closed.
func (h *helper) openPorts(m nsutil.PortOpen, files []*os.File) error {
	defer closeAll(files)
	if len(files) != len(m.Sockets) {
		return fmt.Errorf("port-open: %d host sockets for %d entries", len(files), len(m.Sockets))
	}
	type started struct {
		p     *addedPort
		serve func(context.Context) error
	}
	var made []started
	for i, sc := range m.Sockets {
		p := &addedPort{sc: sc, stats: new(forward.Stats)}
		serve, err := h.addedRelay(p, files[i])
		if err != nil {
			for _, s := range made {
				s.p.sock.Close()
			}
			return err
		}
		made = append(made, started{p, serve})
	}
	h.inst.mu.Lock()
	if h.inst.ports == nil {
		h.inst.ports = make(map[int]*addedPort)
	}
	for i, s := range made {
		h.inst.ports[m.First+i] = s.p
	}
	h.inst.mu.Unlock()
	for _, s := range made {
		h.serve(h.ctx, s.p.sc, func(ctx context.Context) error {
			// Closed by closePorts: the end of this socket, not an error.
			if err := s.serve(ctx); !errors.Is(err, net.ErrClosed) {
				return err
			}
			return nil
		})
	}
	return nil
}

// addedRelay makes the relay of an added host socket f to the server
// inside, as for those of the start (relayFor, its UDP flows in the same
// budget), keeping the socket in p so that closePorts can close it.
func (h *helper) addedRelay(p *addedPort, f *os.File) (func(context.Context) error, error) {
	serve, sock, err := relayFor(p.sc, f, h.cfg, h.dialer, p.stats, h.logger, h.budget)
	if err != nil {
		return nil, err
	}
	p.sock = sock
	return serve, nil
}

// closePorts closes the added host sockets of m, all or none.
func (h *helper) closePorts(m nsutil.PortClose) error {
	h.inst.mu.Lock()
	defer h.inst.mu.Unlock()
	for _, i := range m.Indices {
		if h.inst.ports[i] == nil {
			return fmt.Errorf("port-close: no host socket %d was added", i)
		}
	}
	for _, i := range m.Indices {
		h.inst.ports[i].sock.Close()
		delete(h.inst.ports, i)
	}
	return nil
}

// sendStatsNow answers StatsAsk id with the counters of the sockets of the
// start and of those added.
func (h *helper) sendStatsNow(id uint64) {
	var ports []nsutil.PortStats
	for i, s := range h.stats {
		ports = append(ports, snapshot(i, s))
	}
	h.inst.mu.Lock()
	for i, p := range h.inst.ports {
		ports = append(ports, snapshot(i, p.stats))
	}
	h.inst.mu.Unlock()
	sort.Slice(ports, func(a, b int) bool { return ports[a].Index < ports[b].Index })
	var native []int
	if h.cfg.SocketActivation {
		// The server holds every socket of the start (added ones are
		// relayed).
		for i := range h.cfg.Sockets {
			native = append(native, i)
		}
	} else if h.dir != nil {
		for i := range h.cfg.Sockets {
			if h.dir.inUse(i) {
				native = append(native, i)
			}
		}
	}
	for start := 0; ; start += nsutil.StatsPerMsg {
		end := min(start+nsutil.StatsPerMsg, len(ports))
		m := nsutil.StatsNow{ID: id, Ports: ports[start:end], Last: end == len(ports)}
		if m.Last {
			m.Native = native
		}
		if err := h.ctrl.Send(m); err != nil || m.Last {
			return
		}
	}
}

// execArgs are the exec step's arguments for command: the server's, but
// for the bind filter, which is the server's alone (its director answers
// the server's binds only).
func (h *helper) execArgs(command []string) []string {
	args := []string{nsutil.RoleExec}
	if h.cfg.Root {
		args = append(args, execKeepCaps)
	}
	if h.cfg.Confine != nil {
		// The same jail as the server's (its note was printed once, at
		// the server's start).
		if b, err := json.Marshal(h.cfg.Confine); err == nil {
			args = append(args, execConfine, string(b), execQuiet)
		}
	}
	return append(append(args, "--"), command...)
}

// execCommand runs the command of m through the exec step with files as
// its stdin, stdout and stderr, reports that it runs, and its end.
func (h *helper) execCommand(m nsutil.ExecStart, files []*os.File) {
	if len(files) != 3 || len(m.Args) == 0 {
		closeAll(files)
		err := fmt.Errorf("exec: %d files and %d arguments, want stdin, stdout, stderr and a command", len(files), len(m.Args))
		h.ctrl.Send(nsutil.ExecStarted{ID: m.ID, Code: exitFailed, Err: nsutil.NewStepError(err)})
		return
	}
	c, err := h.srv.StartChild(nsutil.ChildConfig{
		Path:   "/proc/self/exe",
		Args:   h.execArgs(m.Args),
		Env:    append(serverEnv(os.Environ()), m.Env...),
		Dir:    m.Dir,
		Stdin:  files[0],
		Stdout: files[1],
		Stderr: files[2],
		TTY:    m.TTY,
	})
	closeAll(files)
	if err != nil {
		h.ctrl.Send(nsutil.ExecStarted{ID: m.ID, Code: nsutil.FailureCode(err), Err: nsutil.NewStepError(err)})
		return
	}
	h.inst.mu.Lock()
	if h.inst.execs == nil {
		h.inst.execs = make(map[uint64]*nsutil.Child)
	}
	h.inst.execs[m.ID] = c
	h.inst.mu.Unlock()
	h.logger.Debug("exec: started", "pid", c.Pid, "command", m.Args)
	h.ctrl.Send(nsutil.ExecStarted{ID: m.ID, Pid: c.Pid})
	st := <-c.Exited()
	h.inst.mu.Lock()
	delete(h.inst.execs, m.ID)
	h.inst.mu.Unlock()
	h.ctrl.Send(nsutil.ExecExit{ID: m.ID, Code: st.Code, Signal: int(st.Signal)})
}
