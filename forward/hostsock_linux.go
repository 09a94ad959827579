package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SocketKind names a kind of unconnected host socket: its protocol and
// family.
type SocketKind string

// The kinds of host sockets the outbound path uses.
const (
	TCP4 SocketKind = "tcp4"
	TCP6 SocketKind = "tcp6"
	UDP4 SocketKind = "udp4"
	UDP6 SocketKind = "udp6"
)

// SocketKinds lists every kind.
var SocketKinds = []SocketKind{TCP4, TCP6, UDP4, UDP6}

// KindFor is the kind of socket that reaches a.
func KindFor(p Proto, a netip.Addr) SocketKind {
	six := a.Is6() && !a.Is4In6()
	switch {
	case p == UDP && six:
		return UDP6
	case p == UDP:
		return UDP4
	case six:
		return TCP6
	}
	return TCP4
}

// NewHostSockets makes n unconnected, non-blocking sockets of kind in the
// caller's network namespace. The parent calls it on the host: a socket
// keeps the namespace it was made in (fact 3 of DESIGN.md), so the helper
// that connects it inside reaches what the user reaches from the host,
// with the host's routing, and connect() reports the host's errors.
func NewHostSockets(kind SocketKind, n int) ([]*os.File, error) {
	var family, typ int
	switch kind {
	case TCP4:
		family, typ = unix.AF_INET, unix.SOCK_STREAM
	case TCP6:
		family, typ = unix.AF_INET6, unix.SOCK_STREAM
	case UDP4:
		family, typ = unix.AF_INET, unix.SOCK_DGRAM
	case UDP6:
		family, typ = unix.AF_INET6, unix.SOCK_DGRAM
	default:
		return nil, fmt.Errorf("unknown socket kind %q", kind)
	}
	files := make([]*os.File, 0, n)
	for range n {
		fd, err := unix.Socket(family, typ|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, fmt.Errorf("making a host %s socket: %w", kind, err)
		}
		if family == unix.AF_INET6 {
			// A v6 socket reaches v6 destinations; v4 ones get a v4 socket.
			unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
		}
		files = append(files, os.NewFile(uintptr(fd), string(kind)))
	}
	return files, nil
}

// Pool sizes: the parent sends sockets in batches of poolBatch, asked for
// when fewer than poolLow are left, so a burst of connections rarely waits
// for the round trip. Every socket kept is a descriptor of the helper (four
// kinds: 4 × poolBatch at rest), which counts against the user's limit, so
// the batches are small.
const (
	poolBatch = 8
	poolLow   = 4
	poolMax   = 4 * poolBatch
)

// ErrNoHostSocket is returned when no host socket arrived in time (the
// parent is gone or cannot make sockets).
var ErrNoHostSocket = errors.New("no host socket available")

// SocketPool holds unconnected host sockets that the parent made, per kind,
// and asks for more before it runs out. Every method may be called from any
// goroutine.
type SocketPool struct {
	// Refill asks the parent for n more sockets of kind; they arrive
	// through Add. It must not block for long.
	Refill func(kind SocketKind, n int) error
	// Wait bounds how long Get waits for a socket when the pool is empty.
	Wait time.Duration

	once   sync.Once
	mu     sync.Mutex
	socks  map[SocketKind]chan *os.File
	asking map[SocketKind]bool
}

func (p *SocketPool) init() {
	p.once.Do(func() {
		p.socks = make(map[SocketKind]chan *os.File)
		p.asking = make(map[SocketKind]bool)
		for _, k := range SocketKinds {
			p.socks[k] = make(chan *os.File, poolMax)
		}
	})
}

// Add puts sockets of kind that the parent sent into the pool.
func (p *SocketPool) Add(kind SocketKind, files []*os.File) {
	p.init()
	ch, ok := p.socks[kind]
	p.mu.Lock()
	p.asking[kind] = false
	p.mu.Unlock()
	for _, f := range files {
		if !ok {
			f.Close()
			continue
		}
		select {
		case ch <- f:
		default:
			f.Close()
		}
	}
}

// Fill asks for a first batch of every kind.
func (p *SocketPool) Fill() {
	p.init()
	for _, k := range SocketKinds {
		p.ask(k)
	}
}

func (p *SocketPool) ask(kind SocketKind) {
	p.mu.Lock()
	if p.asking[kind] {
		p.mu.Unlock()
		return
	}
	p.asking[kind] = true
	p.mu.Unlock()
	if p.Refill == nil || p.Refill(kind, poolBatch) != nil {
		p.mu.Lock()
		p.asking[kind] = false
		p.mu.Unlock()
	}
}

// Get takes a socket of kind, waiting up to p.Wait when none is there.
func (p *SocketPool) Get(ctx context.Context, kind SocketKind) (*os.File, error) {
	p.init()
	ch, ok := p.socks[kind]
	if !ok {
		return nil, fmt.Errorf("unknown socket kind %q", kind)
	}
	if len(ch) <= poolLow {
		p.ask(kind)
	}
	select {
	case f := <-ch:
		return f, nil
	default:
	}
	wait := p.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case f := <-ch:
			return f, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, fmt.Errorf("%w: no %s socket from nsbind within %v", ErrNoHostSocket, kind, wait)
		case <-time.After(time.Second):
			// The answer may have been lost (the parent could not make
			// sockets): ask again.
			p.ask(kind)
		}
	}
}

// Close closes every socket in the pool.
func (p *SocketPool) Close() {
	p.init()
	for _, ch := range p.socks {
		for {
			select {
			case f := <-ch:
				f.Close()
				continue
			default:
			}
			break
		}
	}
}

// connectHostTCP connects f, an unconnected host TCP socket, to dst and returns
// it as a *net.TCPConn (which splices). f is closed. The error is the
// host's own (ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT...); ctx ends the wait.
func connectHostTCP(ctx context.Context, f *os.File, dst netip.AddrPort) (*net.TCPConn, error) {
	defer f.Close()
	if err := connectHostFile(ctx, f, dst); err != nil {
		return nil, err
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("host socket is not TCP")
	}
	tc.SetNoDelay(true)
	return tc, nil
}

// connectHostUDP connects f, an unconnected host UDP socket, to dst. f is
// closed.
func connectHostUDP(f *os.File, dst netip.AddrPort) (*net.UDPConn, error) {
	defer f.Close()
	if err := connectHostFile(context.Background(), f, dst); err != nil {
		return nil, err
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UDPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("host socket is not UDP")
	}
	return uc, nil
}

// connectHostFile connects the non-blocking socket f to dst, waiting for a
// TCP handshake through Go's poller (as dialSocket does).
func connectHostFile(ctx context.Context, f *os.File, dst netip.AddrPort) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	sa := addrPortToSockaddr(dst)
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	if !errors.Is(cerr, unix.EINPROGRESS) {
		return cerr
	}
	return waitConnected(ctx, f, sa, 0)
}

// bindNative binds the host sockets of one published TCP port on the
// native path: the catch-all first, without SO_REUSEPORT, so a port taken
// on any address of the spec fails here (EADDRINUSE) as it would for a
// plain listener; then SO_REUSEPORT on it, so the family sockets can bind
// beside it. Only the catch-all listens. Another process of the same user
// with SO_REUSEPORT could still bind the port beside them afterwards (the
// kernel allows what one user does with its own sockets); a process
// without it, or another nsbind, cannot. A spec of one IPv6 address gets
// one plain socket (only its family has a socket to give). Where the host
// has no IPv6 at all the default spec falls back to plain sockets.
func bindNative(group []Binding, logger *slog.Logger) ([]HostSocket, error) {
	b0 := group[0]
	host := b0.Host.Addr()
	var (
		catchAll netip.Addr
		onLo     bool
		families []Binding
		hidden   bool // the catch-all is not printed
	)
	switch {
	case b0.Default:
		catchAll, onLo, hidden = netip.IPv6Unspecified(), true, true
		families = group
	case host.Is4():
		catchAll, hidden = netip.AddrFrom16(host.As16()), true
		families = []Binding{b0}
	case host.IsUnspecified():
		catchAll = netip.IPv6Unspecified()
		v4 := b0
		v4.Host = netip.AddrPortFrom(netip.IPv4Unspecified(), b0.Host.Port())
		families = []Binding{v4}
	default:
		return bindGroup(group, logger)
	}
	ca := b0
	ca.Host = netip.AddrPortFrom(catchAll, b0.Host.Port())
	fd, port, err := bindRaw(ca.Host, false, onLo, false)
	if err != nil && b0.Default && (unavailable(err) || errors.Is(err, unix.EPERM)) {
		// No IPv6 on this host, or a kernel before 5.7 that wants
		// CAP_NET_RAW for SO_BINDTODEVICE: a socket per address, as for
		// the relay; the server gets the one of its family.
		logger.Debug("no catch-all on lo: a host socket per loopback address", "spec", b0.Spec.String(), "err", err)
		return bindGroup(group, logger)
	}
	if err != nil {
		return nil, &BindError{Binding: b0, Err: err}
	}
	// Not := here: a failed listen must reach the check below.
	if err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err == nil {
		err = unix.Listen(fd, unix.SOMAXCONN)
	}
	if err != nil {
		unix.Close(fd)
		return nil, &BindError{Binding: b0, Err: err}
	}
	ca.Host = netip.AddrPortFrom(catchAll, port)
	out := []HostSocket{{Binding: ca, Addr: ca.Host, File: os.NewFile(uintptr(fd), ca.Host.String()), Role: RoleCatchAll, Hidden: hidden}}
	for _, b := range families {
		b.Host = netip.AddrPortFrom(b.Host.Addr(), port)
		fd, _, err := bindRaw(b.Host, true, false, true)
		if err != nil && b.Default && b.Host.Addr().Is6() && unavailable(err) {
			logger.Debug("IPv6 loopback not available: its clients come through the catch-all", "spec", b.Spec.String(), "err", err)
			continue
		}
		if err != nil {
			CloseAll(out)
			return nil, &BindError{Binding: b, Err: err}
		}
		out = append(out, HostSocket{Binding: b, Addr: b.Host, File: os.NewFile(uintptr(fd), b.Host.String()),
			Role: RoleFamily, Hidden: !hidden})
	}
	return out, nil
}

// bindRaw binds a non-blocking TCP socket of ap's family (AF_INET6 for a
// v4-mapped address, not IPv6-only) to ap, with SO_REUSEPORT if reusePort
// (before the bind), on lo only if onLo, IPv6-only if v6only; it does not
// listen. It returns the socket and the bound port.
func bindRaw(ap netip.AddrPort, reusePort, onLo, v6only bool) (int, uint16, error) {
	a := ap.Addr()
	family := unix.AF_INET6
	if a.Is4() {
		family = unix.AF_INET
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	fail := func(err error) (int, uint16, error) {
		unix.Close(fd)
		return -1, 0, err
	}
	if family == unix.AF_INET6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, boolInt(v6only)); err != nil {
			return fail(err)
		}
	}
	// SO_REUSEADDR lets the port be bound while connections of an earlier
	// run are in TIME_WAIT, as Go's listeners do; a port the kernel picks
	// needs none (see bindOne).
	if ap.Port() != 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
			return fail(err)
		}
	}
	if reusePort {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			return fail(err)
		}
	}
	if onLo {
		// Allowed without CAP_NET_RAW since Linux 5.7, before a device
		// is set (fact 11 of DESIGN.md).
		if err := unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, "lo"); err != nil {
			return fail(fmt.Errorf("binding to lo: %w", err))
		}
	}
	if err := unix.Bind(fd, addrPortToSockaddr(ap)); err != nil {
		return fail(err)
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return fail(err)
	}
	var port int
	switch s := got.(type) {
	case *unix.SockaddrInet4:
		port = s.Port
	case *unix.SockaddrInet6:
		port = s.Port
	}
	return fd, uint16(port), nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// HostDialer dials the host through unconnected host sockets of Pool:
// To4 for clients of IPv4, To6 for those of IPv6, the other where one is
// not valid. The inside view of the native path relays with it to the host
// socket the server has.
type HostDialer struct {
	Pool     *SocketPool
	To4, To6 netip.Addr
}

// DialTCP implements Dialer.
func (d HostDialer) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	to := d.To4
	if (client.Addr().Unmap().Is6() && d.To6.IsValid()) || !to.IsValid() {
		to = d.To6
	}
	f, err := d.Pool.Get(ctx, KindFor(TCP, to))
	if err != nil {
		return nil, err
	}
	return connectHostTCP(ctx, f, netip.AddrPortFrom(to, port))
}
