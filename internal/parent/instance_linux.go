package parent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/internal/instance"
	"github.com/nsbind/nsbind/nsutil"
)

// The parent's part of nsbind's instance commands (nsbind ps, port, exec,
// stats, stop): the run holds its name as a control socket
// (internal/instance) and answers the commands as its Handler. What needs
// the namespace (relays of added ports, the counters, commands run
// inside) it asks the helper over the control channel, each request
// keyed by an ID; the receive goroutine hands the answers to take.

// Bounds on the helper's answers. The helper answers at once from its
// receive goroutine, but it starts reading only once the server runs.
const (
	askTimeout  = 10 * time.Second
	execTimeout = 30 * time.Second
	// pathTimeout bounds the question which host sockets the server
	// holds itself, for nsbind ps: a slow helper shows "relay".
	pathTimeout = time.Second
)

// instanceHandler is the run's instance.Handler. Its methods are called
// from the control socket's connection goroutines, several at once; take
// from the control channel's receive goroutine.
type instanceHandler struct {
	r       *run
	srv     *instance.Server
	started time.Time
	// ctrl and done are the helper's, set by serve before the first
	// request is read.
	ctrl *nsutil.Ctrl
	done <-chan struct{}
	// gone is closed when the run ends, after the last answer of the
	// helper was taken.
	gone     chan struct{}
	goneOnce sync.Once
	stop     context.CancelFunc
	served   chan struct{}

	// portMu makes each nsbind port add or rm one step: the checks and
	// the change see the same set of published sockets.
	portMu sync.Mutex
	mu     sync.Mutex
	socks  []publishedSocket
	next   int // index of the next added socket

	ids     atomic.Uint64
	pmu     sync.Mutex
	pending map[uint64]chan nsutil.Payload
	execs   map[uint64]*execProcess
}

// publishedSocket is one published host socket, of the start (-p) or
// added by nsbind port add, with its index on the control channel.
type publishedSocket struct {
	index int
	sc    nsutil.SocketConfig
	spec  forward.Spec
	added bool
}

// nameInstance takes the run's name (--name, or a default one) for the
// host sockets socks, which are bound by now. A name taken, or a bad one,
// fails the run; without --name a directory nsbind cannot use only costs
// the instance commands, with a warning.
func (r *run) nameInstance(socks []forward.HostSocket) (*instanceHandler, error) {
	ih := &instanceHandler{r: r, started: time.Now(), gone: make(chan struct{}), served: make(chan struct{}),
		pending: make(map[uint64]chan nsutil.Payload), execs: make(map[uint64]*execProcess)}
	for i, s := range socks {
		ih.socks = append(ih.socks, publishedSocket{index: i, sc: r.cfg.Sockets[i], spec: s.Spec})
	}
	ih.next = len(socks)
	srv, err := instance.Listen(r.Name, ih)
	if err != nil {
		var taken *instance.NameTakenError
		if errors.As(err, &taken) {
			return nil, fmt.Errorf("%w: choose another --name or nsbind stop %s", err, taken.Name)
		}
		if r.Name != "" {
			return nil, err
		}
		r.Logger.Warn("nsbind ps, port, exec, stats and stop will not find this run", "err", err)
		return nil, nil
	}
	ih.srv = srv
	return ih, nil
}

// serve answers the instance commands until the run ends (close), asking
// the helper h.
func (ih *instanceHandler) serve(h *nsutil.Helper) {
	if ih == nil {
		return
	}
	ih.ctrl, ih.done = h.Ctrl, h.Done()
	ctx, cancel := context.WithCancel(context.Background())
	ih.stop = cancel
	go func() {
		defer close(ih.served)
		if err := ih.srv.Serve(ctx); err != nil {
			ih.r.Logger.Error(err.Error())
		}
	}()
}

// close ends the instance with the run: the exec'd commands are reported
// gone, the socket is removed, and it returns once Serve has.
func (ih *instanceHandler) close() {
	if ih == nil {
		return
	}
	ih.goneOnce.Do(func() { close(ih.gone) })
	if ih.stop == nil {
		ih.srv.Close()
		return
	}
	ih.stop()
	<-ih.served
}

// name is the instance's name, "" without one.
func (ih *instanceHandler) name() string {
	if ih == nil {
		return ""
	}
	return ih.srv.Name()
}

// take takes an answer of the helper to one of the requests here, and
// reports whether m was one. It must not block: it runs on the receive
// goroutine.
func (ih *instanceHandler) take(m nsutil.Payload) bool {
	var id uint64
	switch m := m.(type) {
	case nsutil.PortDone:
		id = m.ID
	case nsutil.StatsNow:
		id = m.ID
	case nsutil.ExecStarted:
		id = m.ID
	case nsutil.ExecExit:
		if ih == nil {
			return true
		}
		ih.pmu.Lock()
		p := ih.execs[m.ID]
		delete(ih.execs, m.ID)
		ih.pmu.Unlock()
		if p != nil {
			p.exited <- instance.ExitStatus{Code: m.Code, Signal: m.Signal}
		}
		return true
	default:
		return false
	}
	if ih == nil {
		return true
	}
	ih.pmu.Lock()
	ch := ih.pending[id]
	ih.pmu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default: // the asker gave up; its channel is full
		}
	}
	return true
}

// ask sends p, a request of id, with files, and returns the channel its
// answers come on; done forgets the request.
func (ih *instanceHandler) ask(id uint64, p nsutil.Payload, files ...*os.File) (answers <-chan nsutil.Payload, done func(), err error) {
	ch := make(chan nsutil.Payload, 256)
	ih.pmu.Lock()
	ih.pending[id] = ch
	ih.pmu.Unlock()
	done = func() {
		ih.pmu.Lock()
		delete(ih.pending, id)
		ih.pmu.Unlock()
	}
	if err := ih.ctrl.Send(p, files...); err != nil {
		done()
		return nil, nil, fmt.Errorf("asking the helper: %w", err)
	}
	return ch, done, nil
}

// errHelperGone is a request the helper ended before answering.
var errHelperGone = errors.New("the run has ended")

// answer waits for the next answer on ch, at most d.
func (ih *instanceHandler) answer(ch <-chan nsutil.Payload, d time.Duration) (nsutil.Payload, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case m := <-ch:
		return m, nil
	case <-ih.done:
		return nil, errHelperGone
	case <-t.C:
		return nil, fmt.Errorf("the helper did not answer within %v", d)
	}
}

// portRequest sends a port-open or port-close and waits for its port-done.
func (ih *instanceHandler) portRequest(id uint64, p nsutil.Payload, files ...*os.File) error {
	ch, done, err := ih.ask(id, p, files...)
	if err != nil {
		return err
	}
	defer done()
	m, err := ih.answer(ch, askTimeout)
	if err != nil {
		return err
	}
	if d, ok := m.(nsutil.PortDone); ok && d.Err != nil {
		return d.Err.Err()
	}
	return nil
}

// describedError is err with the line nsbind run prints for it (the cause
// and the remedy), keeping err's errno for the client.
type describedError struct {
	text string
	err  error
}

func (e *describedError) Error() string { return e.text }
func (e *describedError) Unwrap() error { return e.err }

func (ih *instanceHandler) describe(err error) error {
	return &describedError{text: ih.r.Describe(err), err: err}
}

// PortAdd binds the host sockets of specs as nsbind run does, with its
// checks and messages, and has the helper relay them. On error nothing
// changed.
func (ih *instanceHandler) PortAdd(args []string) ([]instance.Socket, error) {
	ih.portMu.Lock()
	defer ih.portMu.Unlock()
	if len(args) == 0 {
		return nil, fmt.Errorf("no port to add: %w", syscall.EINVAL)
	}
	var specs []forward.Spec
	for _, a := range args {
		s, err := forward.ParseSpec(a)
		if err != nil {
			return nil, ih.describe(err)
		}
		specs = append(specs, s)
	}
	// Conflicts with what is published already, in run's words.
	if _, err := forward.Expand(append(ih.publishedSpecs(), specs...)); err != nil {
		return nil, ih.describe(err)
	}
	bindings, err := forward.Expand(specs)
	if err != nil {
		return nil, ih.describe(err)
	}
	socks, err := forward.Bind(bindings, false, ih.r.Logger) // an added port is relayed
	if err != nil {
		return nil, ih.describe(err)
	}
	// The helper holds them once they are sent; the parent's copies go.
	defer forward.CloseAll(socks)
	ih.mu.Lock()
	first := ih.next
	ih.next += len(socks)
	ih.mu.Unlock()
	var added []publishedSocket
	for i, s := range socks {
		added = append(added, publishedSocket{index: first + i, spec: s.Spec, added: true,
			sc: nsutil.SocketConfig{Proto: string(s.Proto), Host: s.Addr, Inside: s.Inside}})
	}
	var opened []int
	for start := 0; start < len(added); start += nsutil.MaxFiles {
		end := min(start+nsutil.MaxFiles, len(added))
		m := nsutil.PortOpen{ID: ih.ids.Add(1), First: first + start}
		var files []*os.File
		for i := start; i < end; i++ {
			m.Sockets = append(m.Sockets, added[i].sc)
			files = append(files, socks[i].File)
		}
		if err := ih.portRequest(m.ID, m, files...); err != nil {
			if len(opened) > 0 {
				id := ih.ids.Add(1)
				ih.portRequest(id, nsutil.PortClose{ID: id, Indices: opened})
			}
			return nil, fmt.Errorf("publishing %s: %w", args, err)
		}
		for i := start; i < end; i++ {
			opened = append(opened, added[i].index)
		}
	}
	ih.mu.Lock()
	ih.socks = append(ih.socks, added...)
	ih.mu.Unlock()
	out := make([]instance.Socket, len(added))
	for i, p := range added {
		out[i] = p.socket(nil)
		if !ih.r.Quiet {
			fmt.Fprintf(ih.r.Stderr, "nsbind: %s → :%d/%s (added)\n", p.sc.Host, p.sc.Inside, p.sc.Proto)
		}
	}
	return out, nil
}

// publishedSpecs are the specs of the sockets published now, each once.
func (ih *instanceHandler) publishedSpecs() []forward.Spec {
	ih.mu.Lock()
	defer ih.mu.Unlock()
	var out []forward.Spec
	seen := make(map[forward.Spec]bool)
	for _, p := range ih.socks {
		if !seen[p.spec] {
			seen[p.spec] = true
			out = append(out, p.spec)
		}
	}
	return out
}

// PortRm closes the host sockets of specs, which nsbind port add must have
// published; connections in flight finish. On error nothing changed.
func (ih *instanceHandler) PortRm(args []string) ([]instance.Socket, error) {
	ih.portMu.Lock()
	defer ih.portMu.Unlock()
	if len(args) == 0 {
		return nil, fmt.Errorf("no port to remove: %w", syscall.EINVAL)
	}
	ih.mu.Lock()
	socks := append([]publishedSocket(nil), ih.socks...)
	ih.mu.Unlock()
	remove := make(map[int]bool)
	for _, a := range args {
		s, err := forward.ParseSpec(a)
		if err != nil {
			return nil, ih.describe(err)
		}
		bindings, err := forward.Expand([]forward.Spec{s})
		if err != nil {
			return nil, ih.describe(err)
		}
		found := false
		for _, p := range socks {
			if !matches(p, bindings) {
				continue
			}
			if !p.added {
				return nil, errnoQuiet(syscall.EPERM, "%s → :%d/%s was published by nsbind run -p %s: only ports added with nsbind port add can be removed",
					p.sc.Host, p.sc.Inside, p.sc.Proto, p.spec)
			}
			remove[p.index], found = true, true
		}
		if !found {
			return nil, errnoQuiet(syscall.ENOENT, "-p %s is not published (nsbind port %s ls lists what is)", a, ih.name())
		}
	}
	indices := make([]int, 0, len(remove))
	for i := range remove {
		indices = append(indices, i)
	}
	sort.Ints(indices)
	id := ih.ids.Add(1)
	if err := ih.portRequest(id, nsutil.PortClose{ID: id, Indices: indices}); err != nil {
		return nil, fmt.Errorf("unpublishing %s: %w", args, err)
	}
	var out []instance.Socket
	ih.mu.Lock()
	kept := ih.socks[:0]
	for _, p := range ih.socks {
		if remove[p.index] {
			out = append(out, p.socket(nil))
			continue
		}
		kept = append(kept, p)
	}
	ih.socks = kept
	ih.mu.Unlock()
	if !ih.r.Quiet {
		for _, s := range out {
			fmt.Fprintf(ih.r.Stderr, "nsbind: %s → :%d/%s removed\n", s.Host, s.Inside, s.Proto)
		}
	}
	return out, nil
}

// matches reports whether p is one of the host sockets bindings ask for:
// same protocol, inside port and host address, and the same host port, or
// for a port the kernel chose, the same spec.
func matches(p publishedSocket, bindings []forward.Binding) bool {
	for _, b := range bindings {
		if string(b.Proto) != p.sc.Proto || b.Inside != p.sc.Inside || b.Host.Addr() != p.sc.Host.Addr() {
			continue
		}
		if b.Host.Port() == p.sc.Host.Port() || b.Host.Port() == 0 && b.Spec == p.spec {
			return true
		}
	}
	return false
}

// socket is p as the instance commands show it; native lists the indices
// the server holds itself.
func (p publishedSocket) socket(native map[int]bool) instance.Socket {
	path := instance.PathRelay
	if native[p.index] {
		path = instance.PathNative
	}
	return instance.Socket{Host: p.sc.Host.String(), Inside: p.sc.Inside, Proto: p.sc.Proto, Path: path, Spec: p.spec.String()}
}

// PortList returns every published socket.
func (ih *instanceHandler) PortList() []instance.Socket {
	var native map[int]bool
	if ih.r.cfg.Direct || ih.r.cfg.SocketActivation {
		native, _ = ih.counters(pathTimeout)
	}
	return ih.list(native)
}

func (ih *instanceHandler) list(native map[int]bool) []instance.Socket {
	ih.mu.Lock()
	defer ih.mu.Unlock()
	native = ih.shownNative(native)
	out := make([]instance.Socket, 0, len(ih.socks))
	for _, p := range ih.socks {
		if !p.sc.Hidden {
			out = append(out, p.socket(native))
		}
	}
	return out
}

// shownNative is native extended to the sockets the commands show: the
// native path's catch-all beside a default spec's two addresses is not
// shown (nsutil.Announced), so when the server holds it, the addresses of
// its port count as native. ih.mu is held.
func (ih *instanceHandler) shownNative(native map[int]bool) map[int]bool {
	type port struct {
		proto  string
		inside uint16
	}
	held := make(map[port]bool)
	for _, p := range ih.socks {
		if p.sc.Hidden && native[p.index] {
			held[port{p.sc.Proto, p.sc.Inside}] = true
		}
	}
	out := make(map[int]bool, len(native))
	for _, p := range ih.socks {
		out[p.index] = native[p.index] || held[port{p.sc.Proto, p.sc.Inside}]
	}
	return out
}

// counters asks the helper for the counters of every socket now, and which
// host sockets the server holds itself.
func (ih *instanceHandler) counters(d time.Duration) (map[int]bool, map[int]nsutil.PortStats) {
	id := ih.ids.Add(1)
	ch, done, err := ih.ask(id, nsutil.StatsAsk{ID: id})
	if err != nil {
		return nil, nil
	}
	defer done()
	native := make(map[int]bool)
	stats := make(map[int]nsutil.PortStats)
	deadline := time.Now().Add(d)
	for {
		m, err := ih.answer(ch, time.Until(deadline))
		if err != nil {
			return nil, nil
		}
		now, ok := m.(nsutil.StatsNow)
		if !ok {
			continue
		}
		for _, p := range now.Ports {
			stats[p.Index] = p
		}
		for _, i := range now.Native {
			native[i] = true
		}
		if now.Last {
			return native, stats
		}
	}
}

// Stats returns the counters of every published socket; zero when the
// helper does not answer.
func (ih *instanceHandler) Stats() []instance.SocketStats {
	native, stats := ih.counters(askTimeout)
	ih.mu.Lock()
	defer ih.mu.Unlock()
	native = ih.shownNative(native)
	out := make([]instance.SocketStats, 0, len(ih.socks))
	for _, p := range ih.socks {
		if p.sc.Hidden {
			continue
		}
		s := stats[p.index]
		out = append(out, instance.SocketStats{Socket: p.socket(native), Conns: s.Conns, Active: s.Active, Failed: s.Failed,
			BytesIn: s.BytesIn, BytesOut: s.BytesOut, Datagrams: s.Datagrams})
	}
	return out
}

// Info describes the run.
func (ih *instanceHandler) Info() instance.Info {
	return instance.Info{Pid: os.Getpid(), Command: ih.r.Command, Started: ih.started, Sockets: ih.PortList()}
}

// Stop ends the run as SIGTERM to nsbind does: it is that signal.
func (ih *instanceHandler) Stop() { syscall.Kill(os.Getpid(), syscall.SIGTERM) }

// Exec has the helper run req inside. A command that cannot be run is a
// process that has ended with 126 or 127, after nsbind's line on its
// stderr, as nsbind run says it.
func (ih *instanceHandler) Exec(req instance.ExecRequest) (instance.Process, error) {
	if len(req.Files) != 3 {
		return nil, fmt.Errorf("exec needs stdin, stdout and stderr: %w", syscall.EINVAL)
	}
	id := ih.ids.Add(1)
	p := &execProcess{ih: ih, id: id, exited: make(chan instance.ExitStatus, 1)}
	ih.pmu.Lock()
	ih.execs[id] = p
	ih.pmu.Unlock()
	forget := func() {
		ih.pmu.Lock()
		delete(ih.execs, id)
		ih.pmu.Unlock()
	}
	ch, done, err := ih.ask(id, nsutil.ExecStart{ID: id, Args: req.Args, Env: req.Env, Dir: req.Dir, TTY: req.TTY}, req.Files...)
	if err != nil {
		forget()
		return nil, err
	}
	defer done()
	m, err := ih.answer(ch, execTimeout)
	if err != nil {
		forget()
		return nil, err
	}
	started, _ := m.(nsutil.ExecStarted)
	if started.Err != nil {
		forget()
		fmt.Fprintf(req.Files[2], "nsbind: %s\n", ih.r.Describe(started.Err.Err()))
		p.exited <- instance.ExitStatus{Code: started.Code}
		return p, nil
	}
	p.pid = started.Pid
	return p, nil
}

// execProcess is a command the helper runs for nsbind exec.
type execProcess struct {
	ih     *instanceHandler
	id     uint64
	pid    int
	exited chan instance.ExitStatus
}

func (p *execProcess) Pid() int { return p.pid }

func (p *execProcess) Signal(sig syscall.Signal) error {
	if p.pid == 0 {
		return nil
	}
	return p.ih.ctrl.Send(nsutil.ExecSignal{ID: p.id, Signal: int(sig)})
}

// Wait returns the command's status, or, when the run ended without
// reporting it, SIGKILL: the end of the PID namespace killed it.
func (p *execProcess) Wait() instance.ExitStatus {
	select {
	case st := <-p.exited:
		return st
	case <-p.ih.gone:
		select {
		case st := <-p.exited:
			return st
		default:
			return instance.ExitStatus{Signal: int(syscall.SIGKILL)}
		}
	}
}

// quietErrno is a message that carries an errno for whoever classifies the
// error (the instance protocol passes it on) without the errno's own text:
// the message says it all already.
type quietErrno struct {
	msg   string
	errno syscall.Errno
}

func errnoQuiet(errno syscall.Errno, format string, args ...any) error {
	return &quietErrno{msg: fmt.Sprintf(format, args...), errno: errno}
}

func (e *quietErrno) Error() string { return e.msg }
func (e *quietErrno) Unwrap() error { return e.errno }
