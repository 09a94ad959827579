package helper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// unrelayTimeout bounds the wait for the parent to stop relaying a host
// socket that the server binds after all.
const unrelayTimeout = 5 * time.Second

// director is the helper's part of --direct: it answers the server's
// trapped binds (handle) and does what the handovers decide (it is their
// hostSockets). Its bind loop runs on one goroutine and alone touches the
// handover state; gotUnrelayed may be called from any goroutine.
type director struct {
	*helper
	// fds are the helper's own descriptors of the host sockets, kept raw:
	// an *os.File or a net.Listener would change their O_NONBLOCK, which
	// the server shares once it has them.
	fds       []int
	inodes    map[uint64]int
	published map[uint16]bool
	handovers *handovers
	listener  *nsutil.BindListener
	disabled  bool
	unrelayed chan int
	// mu guards the handover state: the bind loop changes it, the reaper
	// of never-bound ports (director_reap_linux.go) reads it and accepts
	// only on sockets still Waiting, so never on one the server has.
	mu    sync.Mutex
	views *views
	// rewrite and hostNetns serve the truthful getsockname
	// (director_sockname_linux.go).
	rewrite   map[uint16]uint16
	hostNetns uint64 // the cookie of the host's network namespace
}

// newDirector takes the inherited host sockets (descriptors FirstFD on).
// No relay starts yet: until the server binds, connections wait in the
// host sockets' backlog.
func newDirector(h *helper) *director {
	socks := h.cfg.Sockets
	d := &director{helper: h,
		inodes:    make(map[uint64]int),
		published: make(map[uint16]bool),
		unrelayed: make(chan int, len(socks)),
	}
	pub := make([]forward.Published, len(socks))
	for i, sc := range socks {
		fd := nsutil.FirstFD + i
		d.fds = append(d.fds, fd)
		if ino, err := forward.SocketInode(fd); err == nil {
			d.inodes[ino] = i
		}
		proto := forward.Proto(sc.Proto)
		pub[i] = forward.Published{Proto: proto, Host: sc.Host, Inside: sc.Inside, Role: forward.Role(sc.Role),
			Fixed: proto == forward.UDP && !h.cfg.DirectUDP}
		d.published[sc.Inside] = sc.Inside != 0
	}
	d.handovers = newHandovers(pub, d, func(what string, i int, err error) {
		d.logger.Error(what, "host", socks[i].Host, "err", err)
	})
	d.views = newViews(d)
	d.rewrite = d.rewrites()
	if len(d.fds) > 0 {
		d.hostNetns, _ = netnsCookie(d.fds[0])
	}
	// UDP is relayed from the start unless --direct-udp: a UDP socket
	// given to the server could send to any address the host reaches.
	d.handovers.relayFixed()
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
	d.logger.Debug("--direct: the server's bind(2) calls are trapped (seccomp user notification)")
	d.startReaper()
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
	d.logger.Warn(fmt.Sprintf("the native path (--direct) is not available here (%v): relaying the published ports instead", err))
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disabled = true
	d.handovers.relayWaiting()
}

// handle answers one bind of the server: a bind of a published port gets
// the host socket the handovers decide on, any other continues inside.
func (d *director) handle(c *nsutil.BindCall) {
	l := d.listener
	if c.Getsockname {
		d.getsockname(c)
		return
	}
	req, sfd, opts, ok := d.request(c)
	if !ok {
		return
	}
	defer unix.Close(sfd)
	log := d.logger.With("pid", c.Pid, "fd", c.FD, "addr", req.Addr)
	d.mu.Lock()
	defer d.mu.Unlock()
	dec := d.handovers.decide(req)
	if dec.Give < 0 {
		log.Debug("--direct: bind continues inside", "proto", req.Proto, "why", dec.Why)
		l.Continue(c)
		d.handovers.carryOut(dec, false)
		return
	}
	i := dec.Give
	d.handovers.release(dec)
	family := d.handovers.h.Socket(i).Role == forward.RoleFamily
	var err error
	if family {
		// It listens from now on and takes its family from the
		// catch-all; the server's own listen(2) sets its backlog. It
		// listens before the server's options are copied: listen(2)
		// checks the port again, and passes beside the catch-all only
		// with the SO_REUSEPORT it was bound with.
		err = unix.Listen(d.fds[i], unix.SOMAXCONN)
	}
	unmatched := opts.CopyTo(d.fds[i])
	cloexec, known := nsutil.CloseOnExec(c)
	if !known {
		cloexec = false // keep it across exec, as a server that did not ask would
	}
	undoView := func() {}
	if err == nil && dec.From != forward.Given {
		undoView = d.views.start(i)
	}
	if err == nil {
		err = l.Replace(c, d.fds[i], cloexec)
	}
	if err != nil {
		undoView()
		if family {
			// Listening, it would take clients nobody accepts: shutdown
			// of a listener stops it listening, and it stays bound.
			unix.Shutdown(d.fds[i], unix.SHUT_RD)
		}
		if errors.Is(err, unix.ENOENT) {
			return // the server's thread went away meanwhile
		}
		l.Continue(c)
		log.Debug("--direct: bind continues inside", "why", err)
		d.handovers.inside(req.Proto, req.Addr.Port(), err.Error())
		if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL) {
			// A kernel before 5.9 has no SECCOMP_IOCTL_NOTIF_ADDFD.
			d.disable(err)
		}
		return
	}
	log.Debug("--direct: the server has the host socket", "proto", req.Proto, "host", d.cfg.Sockets[i].Host,
		"why", dec.Why, "unmatched", unmatched, "cloexec", cloexec)
	d.handovers.carryOut(dec, req.ReusePort)
	if dec.From != forward.Given {
		d.sayPath(i)
	}
}

// sayPath says, once the server has host socket i, how each printed
// address of its port reaches it: natively, or relayed on the host to the
// socket it has until it listens on that family too.
func (d *director) sayPath(i int) {
	sc := d.cfg.Sockets[i]
	h := d.handovers.h
	group := h.Group(forward.Proto(sc.Proto), sc.Inside)
	// The families the server's host sockets take natively.
	var native4, native6 bool
	for _, j := range group {
		if h.State(j) != forward.Given {
			continue
		}
		a := h.Socket(j).Host.Addr()
		switch {
		case h.Socket(j).Role == forward.RoleCatchAll && a.Is4In6():
			native4 = true
		case h.Socket(j).Role == forward.RoleCatchAll:
			native4, native6 = true, true
		case a.Is4():
			native4 = true
		default:
			native6 = true
		}
	}
	var direct, relayed []string
	for _, j := range group {
		s := d.cfg.Sockets[j]
		if s.Hidden {
			continue
		}
		a := s.Host.Addr()
		name := s.Host.String()
		switch {
		case s.Role == string(forward.RoleCatchAll) && !a.Is4In6() && native4 != native6:
			// [::] of both families, of which the server takes one.
			v4, v6 := name+" (IPv4)", name+" (IPv6)"
			if native4 {
				direct, relayed = append(direct, v4), append(relayed, v6)
			} else {
				direct, relayed = append(direct, v6), append(relayed, v4)
			}
		case (a.Unmap().Is4() && native4) || (!a.Unmap().Is4() && native6):
			direct = append(direct, name)
		default:
			relayed = append(relayed, name)
		}
	}
	msg := fmt.Sprintf("%s → :%d/%s: native, the server accepts its clients itself", strings.Join(direct, ", "), sc.Inside, sc.Proto)
	if len(relayed) > 0 {
		msg += fmt.Sprintf("; %s relayed on the host to it (it does not listen on that family)", strings.Join(relayed, ", "))
	}
	d.logger.Info(msg)
}

// request reads what the server's bind asks for. It answers the binds
// that are none of the director's business itself (ok false): those
// continue inside, or succeed at once when the host socket is in place
// already. With ok, sfd is the helper's copy of the server's socket and
// opts its options.
func (d *director) request(c *nsutil.BindCall) (req forward.BindRequest, sfd int, opts forward.SocketOptions, ok bool) {
	l := d.listener
	if d.disabled {
		l.Continue(c)
		return req, -1, opts, false
	}
	if c.ReadErr != nil {
		d.logger.Debug("--direct: bind continues inside", "pid", c.Pid, "fd", c.FD, "why", c.ReadErr)
		l.Continue(c)
		return req, -1, opts, false
	}
	addr, ok := forward.ParseSockaddr(c.Sockaddr)
	if !ok || !d.published[addr.Port()] {
		// Not a published port (Go's [::1]:0 probes, an admin port):
		// the kernel binds it inside, untouched.
		l.Continue(c)
		return req, -1, opts, false
	}
	log := d.logger.With("pid", c.Pid, "fd", c.FD, "addr", addr)
	sfd, err := l.ServerSocket(c)
	if errors.Is(err, nsutil.ErrCallGone) {
		log.Debug("--direct: bind interrupted, waiting for it again")
		return req, -1, opts, false
	}
	if err != nil {
		log.Debug("--direct: bind continues inside", "why", err)
		l.Continue(c)
		for _, proto := range []forward.Proto{forward.TCP, forward.UDP} {
			d.handovers.inside(proto, addr.Port(), err.Error())
		}
		return req, -1, opts, false
	}
	if ino, err := forward.SocketInode(sfd); err == nil {
		if _, ours := d.inodes[ino]; ours {
			// The host socket is in place already: the answer to this
			// bind was lost to a signal and the kernel restarted it.
			unix.Close(sfd)
			l.Succeed(c)
			return req, -1, opts, false
		}
	}
	opts, err = forward.ReadSocketOptions(sfd)
	if err != nil {
		log.Debug("--direct: bind continues inside", "why", err)
		unix.Close(sfd)
		l.Continue(c)
		return req, -1, opts, false
	}
	proto, ok := opts.Proto()
	if !ok || (opts.Domain == unix.AF_INET) != addr.Addr().Is4() {
		// Not TCP or UDP, or an address of the other family, which the
		// kernel refuses by itself.
		unix.Close(sfd)
		l.Continue(c)
		return req, -1, opts, false
	}
	return forward.BindRequest{Proto: proto, Addr: addr, ReusePort: opts.ReusePort(), V6Only: opts.V6Only}, sfd, opts, true
}

// relay starts the helper's relay of host socket i to the server inside.
func (d *director) relay(i int) (func(), error) {
	sc := d.cfg.Sockets[i]
	nfd, err := unix.FcntlInt(uintptr(d.fds[i]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(nfd), sc.Host.String())
	serve, _, err := relayFor(sc, f, d.cfg, d.dialer, d.stats[i], d.logger, d.budget)
	f.Close()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(d.ctx)
	d.serve(ctx, sc, serve)
	return cancel, nil
}

// forward has the parent relay host socket i on the host to host socket
// target, which the server has.
func (d *director) forward(i, target int) error {
	nfd, err := unix.FcntlInt(uintptr(d.fds[i]), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(nfd), d.cfg.Sockets[i].Host.String())
	defer f.Close()
	return d.ctrl.Send(nsutil.Relay{Socket: i, Target: target}, f)
}

// takeBack has the parent stop relaying host socket i and waits until it
// has, so that nothing but the server accepts on it afterwards.
func (d *director) takeBack(i int) {
	if err := d.ctrl.Send(nsutil.Unrelay{Socket: i}); err != nil {
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

// inUse reports whether a process other than the helper holds host socket
// i: the server, when it has not closed the socket it got.
func (d *director) inUse(i int) bool {
	ino, err := forward.SocketInode(d.fds[i])
	return err != nil || nsutil.SocketInUse(ino)
}

// gotUnrelayed passes on the parent's Unrelayed. d may be nil.
func (d *director) gotUnrelayed(m nsutil.Unrelayed) {
	if d == nil {
		return
	}
	select {
	case d.unrelayed <- m.Socket:
	default:
	}
}
