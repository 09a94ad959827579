package forward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"
)

// Dialer opens the inside leg of a relayed TCP connection.
type Dialer interface {
	// DialTCP connects to the server's port for a client at client.
	DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error)
}

// SocketDialer is a Dialer that can open the leg as a bare socket, in Go's
// poller but without what a *net.TCPConn costs per connection (the
// addresses asked of the kernel, the dial's machinery). TCPRelay uses it
// where a Dialer has it.
type SocketDialer interface {
	Dialer
	// DialSocket is DialTCP's connection as a non-blocking *os.File.
	DialSocket(ctx context.Context, client netip.AddrPort, port uint16) (*os.File, error)
}

// socketConn makes a dialed socket a *net.TCPConn, for a Dialer's DialTCP.
func socketConn(f *os.File, err error) (*net.TCPConn, error) {
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// leg is one side of a relayed connection: a *net.TCPConn, or a TCP socket
// as an *os.File (accepted or dialed by the relay itself).
type leg interface {
	io.ReadWriter
	SyscallConn() (syscall.RawConn, error)
	SetReadDeadline(time.Time) error
	Close() error
}

// LoopbackDialer dials the server on the loopback addresses of the network
// namespace the caller runs in: the client's address family first, then the
// other, so a v6 client reaches a server that listens on v4 only.
type LoopbackDialer struct{}

var (
	loopback4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	loopback6 = netip.IPv6Loopback()
)

// DialTCP implements Dialer.
func (d LoopbackDialer) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	return socketConn(d.DialSocket(ctx, client, port))
}

// DialSocket implements SocketDialer.
func (LoopbackDialer) DialSocket(ctx context.Context, client netip.AddrPort, port uint16) (*os.File, error) {
	first, second := loopback4, loopback6
	if client.Addr().Unmap().Is6() {
		first, second = second, first
	}
	f, err := dialSocket(ctx, netip.AddrPort{}, netip.AddrPortFrom(first, port), 0)
	if err == nil {
		return f, nil
	}
	if f, err2 := dialSocket(ctx, netip.AddrPort{}, netip.AddrPortFrom(second, port), 0); err2 == nil {
		return f, nil
	}
	return nil, err
}

// TCPRelay relays connections accepted on a host listener to the server's
// port inside.
type TCPRelay struct {
	// Port is the server's port inside.
	Port uint16
	// Dialer opens the inside leg.
	Dialer Dialer
	// Wait bounds how long a connection that arrives before the server
	// listens waits for it (the dial is retried while it is refused), and
	// how long one waits for a descriptor to dial it.
	Wait time.Duration
	// Logger gets per-connection events at debug level.
	Logger *slog.Logger
	// Stats, if not nil, counts connections and bytes.
	Stats *Stats
	// ProxyProtocol, if 1 or 2, sends a PROXY protocol header of that
	// version to the server first on each connection, for servers that
	// expect one.
	ProxyProtocol int

	mu        sync.Mutex
	closed    bool
	listeners []io.Closer // what Serve accepts on, for Close

	// fdWait is held by the one connection that waits for a descriptor to
	// dial the server (made by Serve). The accept loop waits for it too.
	fdWait chan struct{}
}

// Serve accepts on ln until ctx is done, then closes ln and returns once
// every connection has ended. Connections still open when ctx ends stop
// reading from their clients but deliver what the server still sends.
//
// Out of descriptors, new clients wait in the listen backlog: accept fails
// with EMFILE and is retried with a backoff. A connection accepted without
// a descriptor left to dial the server waits for one (up to Wait), and
// while it waits no other is accepted, so that the next descriptor freed
// goes to it; others accepted in the same burst are refused (reset), which
// frees their descriptors. Waiting for a descriptor with every accepted
// connection instead would let them hold all descriptors, each waiting for
// one, until Wait ran out.
func (r *TCPRelay) Serve(ctx context.Context, ln *net.TCPListener) error {
	// A listener's own RawConn cannot wait for reads: the relay accepts on
	// a copy of its descriptor, and closes ln at once (no descriptor more
	// than before). Close stops it.
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		return err
	}
	return r.ServeFile(ctx, lf)
}

// ServeFile is Serve on a listening socket given as a non-blocking
// *os.File (ListenerFile makes one), which it closes when it returns.
func (r *TCPRelay) ServeFile(ctx context.Context, lf *os.File) error {
	r.fdWait = make(chan struct{}, 1)
	if !r.track(lf) {
		return nil
	}
	rc, err := lf.SyscallConn()
	if err != nil {
		lf.Close()
		return err
	}
	// What every accepted connection needs is set once, on the listener:
	// they inherit it (the kernel copies the listener's options).
	listenerOptions(rc)
	addr := listenerAddr(rc)
	closeListener := func() { lf.Close() }
	// While a connection waits for a descriptor, accept none.
	gate := func() bool {
		select {
		case r.fdWait <- struct{}{}:
			<-r.fdWait
			return true
		case <-ctx.Done():
			return false
		}
	}
	accept := func() (accepted, error) {
		a, err := acceptSocket(rc)
		if err != nil && r.isClosed() {
			err = errListenerClosed
		}
		return a, err
	}
	return acceptLoop(ctx, addr, closeListener, accept, gate, r.Logger, r.handle)
}

// track remembers the listener files Serve accepts on for Close, and
// reports false (having closed them) when Close came first.
func (r *TCPRelay) track(ls ...io.Closer) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		for _, l := range ls {
			l.Close()
		}
		return false
	}
	r.listeners = append(r.listeners, ls...)
	return true
}

// errListenerClosed is what accept says after Close: Serve then returns
// nil, as when its context ends.
var errListenerClosed = errors.New("the relay was closed")

func (r *TCPRelay) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// Close closes the listener Serve accepts on, before or while it does;
// Serve then stops accepting and returns once its connections have ended.
// (Serve accepts on a copy of its listener's descriptor: closing that
// listener does not stop it.)
func (r *TCPRelay) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, l := range r.listeners {
		l.Close()
	}
	r.listeners = nil
	return nil
}

// accepted is a connection the relay accepted, and its client.
type accepted struct {
	f    *os.File
	peer netip.AddrPort
}

// acceptLoop accepts connections with accept until ctx is done, running
// handle on a goroutine of its own for each, then closes the listener
// (closeListener, which also ends a waiting accept; addr is its address in
// messages) and returns once every handle has returned. Accept errors that pass (out of descriptors or
// memory) are retried with a backoff. gate, if not nil, is called before
// each accept and stops the loop by returning false.
func acceptLoop[C any](ctx context.Context, addr net.Addr, closeListener func(), accept func() (C, error), gate func() bool, logger *slog.Logger, handle func(context.Context, C)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, closeListener)
	defer stop()
	backoff := time.Duration(0)
	for {
		if gate != nil && !gate() {
			return nil
		}
		c, err := accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, errListenerClosed) {
				return nil
			}
			if d, ok := acceptBackoff(err, backoff); ok {
				logger.Debug("accept failed, retrying", "addr", addr, "err", err, "after", d)
				backoff = d
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
				continue
			}
			return err
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			handle(ctx, c)
		}()
	}
}

// acceptBackoff says how long to wait after an accept error that passes
// (out of descriptors or memory, an aborted handshake), and whether it does.
func acceptBackoff(err error, last time.Duration) (time.Duration, bool) {
	switch {
	case errors.Is(err, syscall.ECONNABORTED):
		return 0, true
	case outOfResources(err):
		// The connection stays in the listen backlog: its client waits
		// (or the kernel refuses new ones once the backlog is full).
		d := max(5*time.Millisecond, min(2*last, time.Second))
		return d, true
	}
	return 0, false
}

func (r *TCPRelay) handle(ctx context.Context, a accepted) {
	// A connection reset before accept returned may have no address; it
	// still gets a dial (and fails like any other), not a panic.
	client, peer := a.f, a.peer
	debug := r.Logger.Enabled(ctx, slog.LevelDebug)
	dctx, dialed := dialContext(ctx, client, r.Wait) // dialwatch.go
	server, err := r.dial(dctx, peer)
	dialed()
	if err != nil {
		if debug {
			r.Logger.Debug("cannot reach the server, resetting the client", "client", peer, "port", r.Port, "err", err)
		}
		r.Stats.failed()
		reset(client)
		return
	}
	if r.ProxyProtocol != 0 {
		if err := r.sendProxyHeader(client, server, peer); err != nil {
			r.Logger.Debug("sending the PROXY header", "client", peer, "port", r.Port, "err", err)
			r.Stats.failed()
			reset(client)
			reset(server)
			return
		}
	}
	if debug {
		r.Logger.Debug("connection open", "client", peer, "port", r.Port)
	}
	r.Stats.opened()
	in, out := relay(ctx, client, server)
	r.Stats.closed(in, out)
	if debug {
		r.Logger.Debug("connection closed", "client", peer, "port", r.Port, "bytes_in", in, "bytes_out", out)
	}
}

func (r *TCPRelay) sendProxyHeader(client, server leg, peer netip.AddrPort) error {
	local, ok := localAddr(client)
	if !ok {
		return errors.New("the connection has no local address")
	}
	hdr, err := ProxyHeader(r.ProxyProtocol, peer, local)
	if err != nil {
		return err
	}
	_, err = server.Write(hdr)
	return err
}

// dial connects to the server, retrying for up to r.Wait while it refuses
// (it does not listen yet, or restarts) or, for one connection at a time,
// while the process is out of descriptors or memory (other connections may
// end and free them). The client waits meanwhile; after r.Wait it gets a
// reset. A connection that finds another waiting for a descriptor fails at
// once.
func (r *TCPRelay) dial(ctx context.Context, client netip.AddrPort) (leg, error) {
	deadline := time.Now().Add(r.Wait)
	pause := 2 * time.Millisecond
	waiting := false
	defer func() {
		if waiting {
			<-r.fdWait
		}
	}()
	for {
		c, err := r.dialOnce(ctx, client)
		if err == nil || !retryDial(err) {
			return c, err
		}
		if outOfResources(err) && !waiting {
			select {
			case r.fdWait <- struct{}{}:
				waiting = true
				r.Logger.Debug("out of descriptors: waiting for one to dial the server", "client", client, "port", r.Port, "err", err)
			default:
				return nil, err // another connection waits already
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, err
		}
		select {
		case <-time.After(min(pause, left)):
		case <-ctx.Done():
			return nil, err
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// dialOnce opens the server's leg once, as a bare socket where the Dialer
// can.
func (r *TCPRelay) dialOnce(ctx context.Context, client netip.AddrPort) (leg, error) {
	if sd, ok := r.Dialer.(SocketDialer); ok {
		f, err := sd.DialSocket(ctx, client, r.Port)
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	c, err := r.Dialer.DialTCP(ctx, client, r.Port)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// tcpAddrPort is the address and port of a, a *net.TCPAddr. ok is false
// for nil, which a connection has when the kernel did not report its
// address (reset before accept returned), or for another type.
func tcpAddrPort(a net.Addr) (ap netip.AddrPort, ok bool) {
	t, ok := a.(*net.TCPAddr)
	if !ok || t == nil {
		return netip.AddrPort{}, false
	}
	return t.AddrPort(), true
}

// retryDial reports whether a failed dial of the server may work later.
func retryDial(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || outOfResources(err)
}

// outOfResources reports an error of a process out of descriptors or of a
// kernel out of memory: it passes when other connections end.
func outOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// relay moves bytes both ways between client and server until both
// directions have ended, and returns the bytes moved each way.
func relay(ctx context.Context, client, server leg) (in, out int64) {
	// Once ctx ends the server is gone: stop reading from the client, but
	// let what the server sent reach it.
	stop := context.AfterFunc(ctx, func() { client.SetReadDeadline(time.Now()) })
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		in = pipe(ctx, server, client)
	}()
	out = pipe(ctx, client, server)
	<-done
	client.Close()
	server.Close()
	return in, out
}

// pipe copies src to dst (with splice(2): both are *net.TCPConn) until src
// ends, then half-closes dst so half-closed protocols work. Each splice
// holds a pipe (two descriptors) while data passes; a process out of
// descriptors for one copies through a buffer instead (copyStream falls
// back), so the connection still works. An error (a reset on either side)
// resets both connections, which also ends the other direction.
func pipe(ctx context.Context, dst, src leg) int64 {
	n, err := copyStream(dst, src)
	if err != nil && !(ctx.Err() != nil && errors.Is(err, os.ErrDeadlineExceeded)) {
		reset(dst)
		reset(src)
		return n
	}
	closeWrite(dst)
	return n
}

// closeWrite half-closes c: a FIN to its peer, which may still send.
func closeWrite(c leg) {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_WR) })
	}
}

// reset closes c with a RST instead of a FIN.
func reset(c leg) {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
		})
	}
	c.Close()
}

// Closers closes each of its closers, for a relay and the listener file it
// was given: closed before ServeFile runs, the file would stay open.
type Closers []io.Closer

// Close implements io.Closer.
func (cs Closers) Close() error {
	for _, c := range cs {
		c.Close()
	}
	return nil
}
