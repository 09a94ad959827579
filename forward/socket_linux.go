package forward

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The relay's own sockets. A *net.TCPConn costs per connection what a relay
// does not need: Go asks the kernel for both addresses after accept and
// connect, sets TCP_NODELAY and four keepalive options on every accepted
// connection, and parks the dialing goroutine until the poller reports the
// handshake done, which on loopback it already is when connect returns.
// Here the options are set once on the listener (accepted connections
// inherit them), the client's address comes with accept, and a dial asks
// the socket whether it is connected before it waits.

// Keepalive of the clients' legs, as Go sets it on the connections its
// listeners accept (net.KeepAliveConfig's defaults).
const (
	keepIdle     = 15 // seconds
	keepInterval = 15 // seconds
	keepCount    = 9
)

// listenerOptions sets on a relay's listener what its connections need:
// no Nagle delay (the relay forwards what it gets at once), keepalive (a
// client that vanishes frees its connection), and on loopback reno. The
// host's default congestion control is often bbr, which paces each
// connection with timers; on loopback, where nothing is lost or queued,
// that costs the relay's sends time for nothing, and any process may
// choose reno. A listener that takes clients from other machines keeps the
// host's default.
func listenerOptions(rc syscall.RawConn) {
	rc.Control(func(fd uintptr) {
		s := int(fd)
		unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepIdle)
		unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepInterval)
		unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepCount)
		if onLoopback(s) {
			unix.SetsockoptString(s, unix.IPPROTO_TCP, unix.TCP_CONGESTION, "reno")
		}
	})
}

// onLoopback reports whether socket fd takes only loopback clients: it is
// bound to a loopback address, or to the device lo.
func onLoopback(fd int) bool {
	if dev, err := unix.GetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE); err == nil && dev == "lo" {
		return true
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return false
	}
	ap, ok := sockaddrToAddrPort(sa)
	return ok && ap.Addr().Unmap().IsLoopback()
}

// acceptSocket accepts one connection on the listener behind rc, waiting
// for one in Go's poller, and returns it with its client's address (zero
// when the kernel reported none: a connection reset before accept).
func acceptSocket(rc syscall.RawConn) (accepted, error) {
	var (
		nfd  int
		sa   unix.Sockaddr
		serr error
	)
	err := rc.Read(func(fd uintptr) bool {
		for {
			nfd, sa, serr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if serr == unix.EAFNOSUPPORT {
		// No address: the connection was reset before accept took it
		// (x/sys closed it). Like ECONNABORTED, it passes.
		serr = unix.ECONNABORTED
	}
	if err == nil && serr != nil {
		err = os.NewSyscallError("accept4", serr)
	}
	if err != nil {
		return accepted{}, &net.OpError{Op: "accept", Net: "tcp", Err: err}
	}
	peer, _ := sockaddrToAddrPort(sa)
	return accepted{f: os.NewFile(uintptr(nfd), "tcp"), peer: peer}, nil
}

// dialSocket connects a new TCP socket to dst and returns it, non-blocking
// and in Go's poller. A valid src makes it a transparent socket bound to
// src first (port 0: the kernel chooses one at connect); see
// TransparentDialer. ctx ends the wait for the handshake, and so does
// limit, if not 0.
func dialSocket(ctx context.Context, src, dst netip.AddrPort, limit time.Duration) (*os.File, error) {
	family := unix.AF_INET
	if dst.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, dialError(src, dst, os.NewSyscallError("socket", err))
	}
	fail := func(err error) (*os.File, error) {
		unix.Close(fd)
		return nil, dialError(src, dst, err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if src.IsValid() {
		if err := setTransparent(fd, src.Addr().Is6(), src.Port() == 0); err != nil {
			return fail(err)
		}
		if err := unix.Bind(fd, addrPortToSockaddr(src)); err != nil {
			return fail(os.NewSyscallError("bind", err))
		}
	}
	sa := addrPortToSockaddr(dst)
	err = unix.Connect(fd, sa)
	switch err {
	case nil, unix.EINPROGRESS, unix.EINTR:
	default:
		return fail(os.NewSyscallError("connect", err))
	}
	f := os.NewFile(uintptr(fd), "tcp")
	if err == nil {
		return f, nil
	}
	if err := waitConnected(ctx, f, sa, limit); err != nil {
		f.Close()
		return nil, dialError(src, dst, err)
	}
	return f, nil
}

// waitConnected waits for the handshake of f, connecting to sa. It asks
// first: connect(2) again says EISCONN once connected, the error once it
// failed, EALREADY while in progress.
func waitConnected(ctx context.Context, f *os.File, sa unix.Sockaddr, limit time.Duration) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	try := func(fd uintptr) bool {
		switch e := unix.Connect(int(fd), sa); e {
		case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
			return false
		case unix.EISCONN, nil:
			cerr = nil
		default:
			cerr = os.NewSyscallError("connect", e)
		}
		return true
	}
	// On loopback the handshake is over when connect returns: no wait, no
	// timer.
	if err := rc.Control(func(fd uintptr) {
		if !try(fd) {
			cerr = unix.EALREADY
		}
	}); err != nil {
		return err
	}
	if cerr != unix.EALREADY {
		return cerr
	}
	d, ok := ctx.Deadline()
	if limit > 0 && (!ok || time.Until(d) > limit) {
		d, ok = time.Now().Add(limit), true
	}
	if ok {
		f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := rc.Write(try); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return context.DeadlineExceeded
		}
		return err
	}
	f.SetWriteDeadline(time.Time{})
	return cerr
}

func dialError(src, dst netip.AddrPort, err error) error {
	e := &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(dst), Err: err}
	if src.IsValid() {
		e.Source = net.TCPAddrFromAddrPort(src)
	}
	return e
}

// localAddr is the local address of c.
func localAddr(c leg) (netip.AddrPort, bool) {
	if tc, ok := c.(*net.TCPConn); ok {
		return tcpAddrPort(tc.LocalAddr())
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, false
	}
	var sa unix.Sockaddr
	rc.Control(func(fd uintptr) { sa, _ = unix.Getsockname(int(fd)) })
	return sockaddrToAddrPort(sa)
}

func addrPortToSockaddr(ap netip.AddrPort) unix.Sockaddr {
	if a := ap.Addr(); a.Is4() {
		return &unix.SockaddrInet4{Addr: a.As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

func sockaddrToAddrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

// listenerAddr is the address of the listening socket behind rc, for
// messages.
func listenerAddr(rc syscall.RawConn) net.Addr {
	var sa unix.Sockaddr
	rc.Control(func(fd uintptr) { sa, _ = unix.Getsockname(int(fd)) })
	ap, _ := sockaddrToAddrPort(sa)
	return net.TCPAddrFromAddrPort(ap)
}

// ListenerFile is a copy of the listening socket f for TCPRelay.ServeFile:
// another descriptor of the same socket, non-blocking as f is, in Go's
// poller. f stays the caller's (and open).
func ListenerFile(f *os.File) (*os.File, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		if derr == nil {
			derr = unix.SetNonblock(nfd, true)
		}
	}); err != nil {
		return nil, err
	}
	if derr != nil {
		if nfd >= 0 {
			unix.Close(nfd)
		}
		return nil, os.NewSyscallError("fcntl", derr)
	}
	return os.NewFile(uintptr(nfd), f.Name()), nil
}
