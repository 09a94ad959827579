//go:build !linux

package forward

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Elsewhere the relay's sockets are Go's own (socket_linux.go).

func listenerOptions(syscall.RawConn) {}

func acceptSocket(syscall.RawConn) (accepted, error) {
	return accepted{}, errors.ErrUnsupported
}

func dialSocket(ctx context.Context, _, dst netip.AddrPort, _ time.Duration) (*os.File, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.(*net.TCPConn).File()
}

func localAddr(c leg) (netip.AddrPort, bool) {
	if tc, ok := c.(*net.TCPConn); ok {
		return tcpAddrPort(tc.LocalAddr())
	}
	return netip.AddrPort{}, false
}

func listenerAddr(syscall.RawConn) net.Addr { return nil }

// ListenerFile is a copy of the listening socket f (socket_linux.go).
func ListenerFile(f *os.File) (*os.File, error) {
	ln, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	return ln.(*net.TCPListener).File()
}
