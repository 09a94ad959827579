package forward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// transparentDialTimeout bounds one dial from the client's address. On
// loopback a dial completes at once; one that hangs means the SYN-ACK has
// no way back (the reply route is missing).
const transparentDialTimeout = 3 * time.Second

// TransparentDialer dials the server from the client's own address and
// port, so that the server's accept() sees the real client.
//
// It binds a socket with IP_TRANSPARENT / IPV6_TRANSPARENT, which lets it
// use an address that is not local and needs CAP_NET_ADMIN in the network
// namespace's user namespace (fact 5 of DESIGN.md). The server's replies
// go to that foreign address: without the reply route that
// nsutil.SetupReplyRouting installs they would be lost and the dial would
// hang. When the client's port is taken inside (the same address and port
// still in use, e.g. in TIME_WAIT) it keeps the address and lets the
// kernel choose the port. A client of the other family than the server
// listens on is dialed from loopback, as LoopbackDialer does.
type TransparentDialer struct{}

// DialTCP implements Dialer.
func (d TransparentDialer) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	return socketConn(d.DialSocket(ctx, client, port))
}

// DialSocket implements SocketDialer.
func (TransparentDialer) DialSocket(ctx context.Context, client netip.AddrPort, port uint16) (*os.File, error) {
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	server := loopback4
	if client.Addr().Is6() {
		server = loopback6
	}
	target := netip.AddrPortFrom(server, port)
	f, err := dialKeepingAddr(ctx, client, target)
	if err == nil {
		return f, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		// The server may listen on the other family only.
		other := loopback6
		if server == loopback6 {
			other = loopback4
		}
		if f, err2 := dialSocket(ctx, netip.AddrPort{}, netip.AddrPortFrom(other, port), 0); err2 == nil {
			// A server that was just starting may have begun to listen
			// on both families in between: then keep the client's
			// address after all.
			if again, err3 := dialKeepingAddr(ctx, client, target); err3 == nil {
				f.Close()
				return again, nil
			}
			return f, nil
		}
	}
	return nil, err
}

// dialKeepingAddr dials target from client, or from the client's address
// with another port when that port is taken.
func dialKeepingAddr(ctx context.Context, client, target netip.AddrPort) (*os.File, error) {
	f, err := dialSocket(ctx, client, target, transparentDialTimeout)
	if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
		f, err = dialSocket(ctx, netip.AddrPortFrom(client.Addr(), 0), target, transparentDialTimeout)
	}
	return f, err
}

// setTransparent lets the socket fd bind an address that is not local.
// noPort defers the choice of the port to connect(), where the kernel can
// pick one that is free for the 4-tuple.
func setTransparent(fd int, v6, noPort bool) error {
	var err error
	if v6 {
		err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
	} else {
		err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1)
	}
	if err != nil {
		return fmt.Errorf("setting IP_TRANSPARENT: %w", err)
	}
	if noPort {
		// Best effort: without it the kernel picks the port at bind.
		unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}
	return nil
}

// CheckTransparent reports whether this process may use transparent
// sockets in its network namespace (it needs CAP_NET_ADMIN there).
func CheckTransparent() error {
	for _, v6 := range []bool{false, true} {
		family := unix.AF_INET
		if v6 {
			family = unix.AF_INET6
		}
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			if v6 && errors.Is(err, syscall.EAFNOSUPPORT) {
				continue // no IPv6 here: nothing to check
			}
			return err
		}
		err = setTransparent(fd, v6, false)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// DialUDP implements PacketDialer: a socket inside bound to the client's own
// address and port (transparent, as for TCP), connected to server, so the
// server's recvfrom() sees the real client. A client port taken inside
// keeps the address and lets the kernel choose the port; a server address
// of the other family than the client's (the relay's fallback) is dialed
// from loopback.
func (TransparentDialer) DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error) {
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	if client.Addr().Is4() != server.Addr().Unmap().Is4() {
		return LoopbackDialer{}.DialUDP(ctx, client, server)
	}
	c, err := dialUDPFrom(ctx, client, server)
	if errors.Is(err, syscall.EADDRINUSE) {
		c, err = dialUDPFrom(ctx, netip.AddrPortFrom(client.Addr(), 0), server)
	}
	return c, err
}

func dialUDPFrom(ctx context.Context, src, server netip.AddrPort) (*net.UDPConn, error) {
	d := net.Dialer{
		LocalAddr: net.UDPAddrFromAddrPort(src),
		Control: func(network, address string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = setTransparent(int(fd), src.Addr().Is6(), false) })
			if err != nil {
				return err
			}
			return serr
		},
	}
	c, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.UDPConn), nil
}
