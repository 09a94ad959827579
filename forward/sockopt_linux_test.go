package forward

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// plainListen listens on TCP, not MPTCP, as Bind does for host sockets.
func plainListen(network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), network, addr)
}

// CopyTo gives a listening host socket the options a server set on its own
// socket before bind.
func TestCopyTo(t *testing.T) {
	server, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(server)
	for _, o := range []struct{ level, opt, val int }{
		{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		{unix.SOL_SOCKET, unix.SO_RCVBUF, 40000},
		{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1},
		{unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
		{unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 5},
	} {
		if err := unix.SetsockoptInt(server, o.level, o.opt, o.val); err != nil {
			t.Fatal(err)
		}
	}
	want, err := ReadSocketOptions(server)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := want.Proto(); !ok || p != TCP || !want.ReusePort() {
		t.Fatalf("Proto %v %v, ReusePort %v", p, ok, want.ReusePort())
	}

	ln, err := plainListen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	host := int(f.Fd()) // Fd makes the shared file blocking
	if unmatched := want.CopyTo(host); len(unmatched) != 0 {
		t.Fatalf("unmatched: %v", unmatched)
	}
	got, err := ReadSocketOptions(host)
	if err != nil {
		t.Fatal(err)
	}
	if got.StatusFlags&unix.O_NONBLOCK == 0 {
		t.Error("the host socket is not non-blocking")
	}
	for name, v := range want.values {
		if got.values[name] != v {
			t.Errorf("%s: host socket has %d, want %d", name, got.values[name], v)
		}
	}
	// And back to blocking, for a server that wants that.
	plain, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(plain)
	opts, _ := ReadSocketOptions(plain)
	opts.CopyTo(host)
	if got, _ := ReadSocketOptions(host); got.StatusFlags&unix.O_NONBLOCK != 0 || got.ReusePort() {
		t.Errorf("flags %#x, SO_REUSEPORT %v: want blocking, no SO_REUSEPORT", got.StatusFlags, got.ReusePort())
	}
}

// A v6-only difference cannot be fixed after bind and is reported.
func TestCopyToReportsV6Only(t *testing.T) {
	server, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no IPv6: %v", err)
	}
	defer unix.Close(server)
	unix.SetsockoptInt(server, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	want, _ := ReadSocketOptions(server)
	ln, err := plainListen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	f, _ := ln.(*net.TCPListener).File()
	defer f.Close()
	if unmatched := want.CopyTo(int(f.Fd())); len(unmatched) != 1 {
		t.Fatalf("unmatched %v, want the IPV6_V6ONLY difference", unmatched)
	}
}
