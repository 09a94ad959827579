package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// --direct: the server gets the host socket itself at its bind(2), so it
// accepts host connections with no relay and sees the real client
// addresses (fact 6 of DESIGN.md). The exec step traps bind with a seccomp
// filter (nsutil/seccomp_linux.go); the helper's director answers each
// trapped bind as forward.Handover decides; the parent relays, on the
// host, the host sockets the server did not take to the one it took
// (hostRelays), because only a socket made on the host can reach it.

// directEnv tells the exec step to install the bind filter.
const directEnv = "NSBIND_DIRECT"

// unrelayTimeout bounds the wait for the parent to stop relaying a host
// socket that the server binds after all.
const unrelayTimeout = 5 * time.Second

// director is the helper's part of --direct. Its bind loop runs on one
// goroutine and alone touches the handover state; unrelayed may be called
// from any goroutine.
type director struct {
	ctx    context.Context
	cfg    helperConfig
	ctrl   *nsutil.Ctrl
	logger *slog.Logger
	relays *sync.WaitGroup
	dialer insideDialer
	// stats are the counters of the host sockets, as in the helper.
	stats []*forward.Stats

	// fds are the helper's own descriptors of the host sockets, kept raw:
	// an *os.File or a net.Listener would change their O_NONBLOCK, which
	// the server shares once it has them.
	fds      []int
	inodes   map[uint64]int
	handover *forward.Handover
	// stops[i] stops the helper's relay of host socket i (Relayed).
	stops     []context.CancelFunc
	listener  *nsutil.BindListener
	disabled  bool
	unrelayed chan int
}

// newDirector takes the inherited host sockets (descriptors FirstFD on).
// No relay starts yet: until the server binds, connections wait in the
// host sockets' backlog.
func newDirector(ctx context.Context, cfg helperConfig, ctrl *nsutil.Ctrl, logger *slog.Logger, relays *sync.WaitGroup, dialer insideDialer, stats []*forward.Stats) *director {
	d := &director{
		ctx: ctx, cfg: cfg, ctrl: ctrl, logger: logger, relays: relays, dialer: dialer, stats: stats,
		inodes:    make(map[uint64]int),
		stops:     make([]context.CancelFunc, len(cfg.Sockets)),
		unrelayed: make(chan int, len(cfg.Sockets)),
	}
	pub := make([]forward.Published, len(cfg.Sockets))
	for i, sc := range cfg.Sockets {
		fd := nsutil.FirstFD + i
		d.fds = append(d.fds, fd)
		if ino, err := forward.SocketInode(fd); err == nil {
			d.inodes[ino] = i
		}
		pub[i] = forward.Published{Proto: forward.Proto(sc.Proto), Host: sc.Host, Inside: sc.Inside}
	}
	d.handover = forward.NewHandover(pub)
	return d
}

// start receives the exec step's listener on notify and answers the
// server's binds until ctx ends or no process is left under the filter.
// Where seccomp user notification is not available it says so once and
// relays every host socket, as without --direct.
func (d *director) start(notify *os.File) {
	l, err := nsutil.ReceiveBindListener(notify)
	notify.Close()
	if err != nil {
		d.disable(err)
		return
	}
	d.listener = l
	stop := context.AfterFunc(d.ctx, l.Close)
	go func() {
		defer stop()
		for {
			c, err := l.Next()
			if err != nil {
				if !errors.Is(err, nsutil.ErrBindListenerClosed) {
					d.logger.Error("--direct: " + err.Error())
				}
				return
			}
			d.handle(c)
		}
	}()
}

// disable falls back to the relay for every host socket not given yet.
func (d *director) disable(err error) {
	d.logger.Warn(fmt.Sprintf("--direct is not available here (%v): relaying the published ports instead", err))
	d.disabled = true
	for i := range d.fds {
		if d.handover.State(i) == forward.Waiting {
			d.relay(i)
		}
	}
}

// handle answers one bind of the server.
func (d *director) handle(c *nsutil.BindCall) {
	l := d.listener
	if d.disabled {
		l.Continue(c)
		return
	}
	if c.ReadErr != nil {
		d.logger.Debug("--direct: bind continues inside", "pid", c.Pid, "fd", c.FD, "why", c.ReadErr)
		l.Continue(c)
		return
	}
	addr, ok := forward.ParseSockaddr(c.Sockaddr)
	if !ok || !d.published(addr.Port()) {
		// Not a published port (Go's [::1]:0 probes, an admin port):
		// the kernel binds it inside, untouched.
		l.Continue(c)
		return
	}
	log := d.logger.With("pid", c.Pid, "fd", c.FD, "addr", addr)
	sfd, err := l.ServerSocket(c)
	if errors.Is(err, nsutil.ErrCallGone) {
		log.Debug("--direct: bind interrupted, waiting for it again")
		return
	}
	if err != nil {
		log.Debug("--direct: bind continues inside", "why", err)
		l.Continue(c)
		for _, proto := range []forward.Proto{forward.TCP, forward.UDP} {
			d.carryOut(d.handover.Inside(proto, addr.Port(), err.Error()), false)
		}
		return
	}
	defer unix.Close(sfd)
	if ino, err := forward.SocketInode(sfd); err == nil {
		if _, ours := d.inodes[ino]; ours {
			// The host socket is in place already: the answer to this
			// bind was lost to a signal and the kernel restarted it.
			l.Succeed(c)
			return
		}
	}
	opts, err := forward.ReadSocketOptions(sfd)
	if err != nil {
		log.Debug("--direct: bind continues inside", "why", err)
		l.Continue(c)
		return
	}
	proto, ok := opts.Proto()
	if !ok || (opts.Domain == unix.AF_INET) != addr.Addr().Is4() {
		// Not TCP or UDP, or an address of the other family, which the
		// kernel refuses by itself.
		l.Continue(c)
		return
	}
	req := forward.BindRequest{Proto: proto, Addr: addr, ReusePort: opts.ReusePort()}
	dec := d.handover.Decide(req, d.inUse)
	if dec.Give < 0 {
		log.Debug("--direct: bind continues inside", "proto", proto, "why", dec.Why)
		l.Continue(c)
		d.carryOut(dec, false)
		return
	}
	i := dec.Give
	host := d.cfg.Sockets[i].Host
	switch dec.From {
	case forward.Relayed:
		// Connections the relay carries stop reading from their clients
		// (the relay's end of shutdown); this happens only when the
		// server binds the other family after one that continued inside.
		d.stops[i]()
	case forward.Forwarded:
		d.takeBack(i)
	}
	unmatched := opts.CopyTo(d.fds[i])
	cloexec, known := nsutil.CloseOnExec(c)
	if !known {
		cloexec = false // keep it across exec, as a server that did not ask would
	}
	if err := l.Replace(c, d.fds[i], cloexec); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return // the server's thread went away meanwhile
		}
		l.Continue(c)
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			// A kernel before 5.9 has no SECCOMP_IOCTL_NOTIF_ADDFD.
			d.carryOut(d.handover.Inside(proto, addr.Port(), err.Error()), false)
			d.disable(err)
			return
		}
		log.Debug("--direct: bind continues inside", "why", err)
		d.carryOut(d.handover.Inside(proto, addr.Port(), err.Error()), false)
		return
	}
	log.Debug("--direct: the server has the host socket", "proto", proto, "host", host, "why", dec.Why, "unmatched", unmatched, "cloexec", cloexec)
	d.carryOut(dec, req.ReusePort)
}

// published reports whether some host socket leads to inside port p.
func (d *director) published(p uint16) bool {
	for _, sc := range d.cfg.Sockets {
		if sc.Inside == p && p != 0 {
			return true
		}
	}
	return false
}

// inUse reports whether a process other than the helper holds host socket
// i: the server, when it has not closed the socket it got.
func (d *director) inUse(i int) bool {
	ino, err := forward.SocketInode(d.fds[i])
	return err != nil || nsutil.SocketInUse(ino)
}

// carryOut starts the relays a decision asks for and records it.
func (d *director) carryOut(dec forward.Decision, reusePort bool) {
	for _, i := range dec.Relay {
		d.relay(i)
	}
	for _, i := range dec.Forward {
		d.forward(i, dec.Give)
	}
	d.handover.Record(dec, reusePort)
}

// relay starts the helper's relay of host socket i to the server inside.
func (d *director) relay(i int) {
	sc := d.cfg.Sockets[i]
	nfd, err := unix.FcntlInt(uintptr(d.fds[i]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		d.logger.Error("relay not started", "host", sc.Host, "err", err)
		return
	}
	f := os.NewFile(uintptr(nfd), sc.Host.String())
	serve, err := relayFor(sc, f, d.cfg, d.dialer, d.stats[i], d.logger)
	f.Close()
	if err != nil {
		d.logger.Error("relay not started", "host", sc.Host, "err", err)
		return
	}
	ctx, cancel := context.WithCancel(d.ctx)
	d.stops[i] = cancel
	d.relays.Add(1)
	go func() {
		defer d.relays.Done()
		if err := serve(ctx); err != nil {
			d.logger.Error("relay stopped", "host", sc.Host, "err", err)
		}
	}()
}

// forward has the parent relay host socket i on the host to host socket
// target, which the server has.
func (d *director) forward(i, target int) {
	nfd, err := unix.FcntlInt(uintptr(d.fds[i]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		d.logger.Error("relay not started", "host", d.cfg.Sockets[i].Host, "err", err)
		return
	}
	f := os.NewFile(uintptr(nfd), d.cfg.Sockets[i].Host.String())
	defer f.Close()
	if err := d.ctrl.Send(nsutil.Msg{Type: nsutil.MsgRelay, Socket: i, Target: target}, f); err != nil {
		d.logger.Error("relay not started", "host", d.cfg.Sockets[i].Host, "err", err)
	}
}

// takeBack has the parent stop relaying host socket i and waits until it
// has, so that nothing but the server accepts on it afterwards.
func (d *director) takeBack(i int) {
	if err := d.ctrl.Send(nsutil.Msg{Type: nsutil.MsgUnrelay, Socket: i}); err != nil {
		return
	}
	deadline := time.After(unrelayTimeout)
	for {
		select {
		case j := <-d.unrelayed:
			if j == i {
				return
			}
		case <-deadline:
			d.logger.Debug("--direct: the parent did not confirm the end of a relay", "host", d.cfg.Sockets[i].Host)
			return
		case <-d.ctx.Done():
			return
		}
	}
}

// gotUnrelayed passes on the parent's MsgUnrelayed. d may be nil.
func (d *director) gotUnrelayed(m nsutil.Msg) {
	if d == nil {
		return
	}
	select {
	case d.unrelayed <- m.Socket:
	default:
	}
}

// hostRelays is the parent's part of --direct: it relays, on the host, the
// host sockets the server did not take to the one it took (a default
// 127.0.0.1 + ::1 spec whose server binds one family). Only a socket made
// on the host can connect to a host socket, so this relay cannot run in the
// helper. The server sees these clients coming from the host's loopback.
// TCP and UDP alike.
type hostRelays struct {
	ctx   context.Context
	ctrl  *nsutil.Ctrl
	socks []socketConfig
	wait  time.Duration
	// udpTimeout and udpMaxFlows bound the UDP flows as in the helper.
	udpTimeout  time.Duration
	udpMaxFlows int
	logger      *slog.Logger

	mu sync.Mutex
	// lns are the host sockets relayed now (a *net.TCPListener or a
	// *net.UDPConn); closing one stops its relay.
	lns map[int]io.Closer
}

func newHostRelays(ctx context.Context, ctrl *nsutil.Ctrl, cfg helperConfig, logger *slog.Logger) *hostRelays {
	return &hostRelays{ctx: ctx, ctrl: ctrl, socks: cfg.Sockets, wait: cfg.ConnectTimeout,
		udpTimeout: cfg.UDPTimeout, udpMaxFlows: cfg.UDPMaxFlows, logger: logger, lns: make(map[int]io.Closer)}
}

// handle takes the messages of --direct and reports whether m was one.
// The files that came with m are the caller's to close.
func (p *hostRelays) handle(m nsutil.Msg, files []*os.File) bool {
	switch m.Type {
	case nsutil.MsgRelay:
		if err := p.start(m, files); err != nil {
			p.logger.Error("relay not started", "err", err)
		}
		return true
	case nsutil.MsgUnrelay:
		p.mu.Lock()
		ln := p.lns[m.Socket]
		delete(p.lns, m.Socket)
		p.mu.Unlock()
		if ln != nil {
			// Connections accepted until now go on to the server.
			ln.Close()
		}
		p.ctrl.Send(nsutil.Msg{Type: nsutil.MsgUnrelayed, Socket: m.Socket})
		return true
	}
	return false
}

func (p *hostRelays) start(m nsutil.Msg, files []*os.File) error {
	if len(files) != 1 || m.Socket < 0 || m.Socket >= len(p.socks) || m.Target < 0 || m.Target >= len(p.socks) {
		return fmt.Errorf("bad relay request %+v with %d files", m, len(files))
	}
	sc := p.socks[m.Socket]
	to := forward.DialAddr(p.socks[m.Target].Host)
	dialer := forward.AddrDialer{Addr: to.Addr()}
	var (
		sock  io.Closer
		serve func() error
	)
	switch forward.Proto(sc.Proto) {
	case forward.TCP:
		ln, err := net.FileListener(files[0])
		if err != nil {
			return fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			ln.Close()
			return fmt.Errorf("using host socket %s: not a TCP listener", sc.Host)
		}
		r := &forward.TCPRelay{Port: to.Port(), Dialer: dialer, Wait: p.wait, Logger: p.logger}
		sock, serve = tl, func() error { return r.Serve(p.ctx, tl) }
	case forward.UDP:
		pc, err := net.FilePacketConn(files[0])
		if err != nil {
			return fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return fmt.Errorf("using host socket %s: not a UDP socket", sc.Host)
		}
		r := &forward.UDPRelay{Port: to.Port(), Dialer: dialer, Timeout: p.udpTimeout, MaxFlows: p.udpMaxFlows, Logger: p.logger}
		sock, serve = uc, func() error { return r.Serve(p.ctx, uc) }
	default:
		return fmt.Errorf("using host socket %s: unknown protocol %s", sc.Host, sc.Proto)
	}
	p.mu.Lock()
	if old := p.lns[m.Socket]; old != nil {
		old.Close()
	}
	p.lns[m.Socket] = sock
	p.mu.Unlock()
	p.logger.Debug("--direct: relaying on the host", "host", sc.Host, "proto", sc.Proto, "to", to)
	go func() {
		if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			p.logger.Error("relay stopped", "host", sc.Host, "err", err)
		}
	}()
	return nil
}
