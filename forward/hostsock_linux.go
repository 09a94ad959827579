package forward

import (
	"context"
	"errors"
	"fmt"
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

// connectHostFile connects the non-blocking socket f to dst, waiting for a TCP
// handshake through Go's poller.
func connectHostFile(ctx context.Context, f *os.File, dst netip.AddrPort) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var sa unix.Sockaddr
	if a := dst.Addr(); a.Is4() {
		sa = &unix.SockaddrInet4{Addr: a.As4(), Port: int(dst.Port())}
	} else {
		sa = &unix.SockaddrInet6{Addr: a.As16(), Port: int(dst.Port())}
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err != nil {
		return err
	}
	if !errors.Is(cerr, unix.EINPROGRESS) {
		return cerr
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Now()) })
	defer stop()
	err = rc.Write(func(fd uintptr) bool {
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case v != 0:
			cerr = unix.Errno(v)
		default:
			if _, err := unix.Getpeername(int(fd)); err != nil {
				return false // still connecting: wait until writable
			}
			cerr = nil
		}
		return true
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return cerr
}
