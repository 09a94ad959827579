package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// unconnectedTCP is a real TCP socket that is not connected, as a
// *net.TCPConn: it has no remote address (RemoteAddr is nil), like a
// connection the kernel reports no peer for.
func unconnectedTCP(t *testing.T) *net.TCPConn {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "unconnected")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		t.Fatal(err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		t.Fatalf("FileConn of a TCP socket is a %T", c)
	}
	t.Cleanup(func() { tc.Close() })
	if tc.RemoteAddr() != nil {
		t.Fatalf("an unconnected socket has the remote address %v", tc.RemoteAddr())
	}
	return tc
}

// A redirected connection without a peer address is reset, not a panic
// that takes the helper down.
func TestOutboundWithoutPeerAddress(t *testing.T) {
	o := &Outbound{Pool: &SocketPool{}, Logger: slog.New(slog.DiscardHandler)}
	c := unconnectedTCP(t)
	o.handle(context.Background(), c)
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after handle: %v, want the connection closed", err)
	}
}

// OriginalDst of a connection that was not redirected is an error; it
// does not depend on LocalAddr.
func TestOriginalDstNotRedirected(t *testing.T) {
	if _, err := OriginalDst(unconnectedTCP(t)); err == nil {
		t.Fatal("OriginalDst of an unconnected socket: no error")
	}
	var zero net.TCPConn // no socket: LocalAddr and RemoteAddr are nil
	if _, err := OriginalDst(&zero); err == nil {
		t.Fatal("OriginalDst of a connection without a socket: no error")
	}
}

func TestTCPAddrPort(t *testing.T) {
	want := netip.MustParseAddrPort("127.0.0.1:80")
	tests := []struct {
		name string
		a    net.Addr
		ok   bool
	}{
		{"TCP", net.TCPAddrFromAddrPort(want), true},
		{"nil interface", nil, false},
		{"nil *TCPAddr", (*net.TCPAddr)(nil), false},
		{"UDP", net.UDPAddrFromAddrPort(want), false},
	}
	for _, tt := range tests {
		got, ok := tcpAddrPort(tt.a)
		if ok != tt.ok || (ok && got != want) {
			t.Errorf("%s: %v, %v", tt.name, got, ok)
		}
	}
}
