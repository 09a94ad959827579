package forward

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// sockaddr encodes ap as the kernel's struct sockaddr_in or sockaddr_in6.
func sockaddr(ap netip.AddrPort) []byte {
	if ap.Addr().Is4() {
		b := make([]byte, unix.SizeofSockaddrInet4)
		binary.NativeEndian.PutUint16(b, unix.AF_INET)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		return b
	}
	b := make([]byte, unix.SizeofSockaddrInet6)
	binary.NativeEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	return b
}

func TestParseSockaddr(t *testing.T) {
	unixAddr := make([]byte, 110)
	binary.NativeEndian.PutUint16(unixAddr, unix.AF_UNIX)
	tests := []struct {
		name string
		b    []byte
		want string // "" when not ok
	}{
		{"IPv4", sockaddr(netip.MustParseAddrPort("0.0.0.0:80")), "0.0.0.0:80"},
		{"IPv4 loopback", sockaddr(netip.MustParseAddrPort("127.0.0.1:8080")), "127.0.0.1:8080"},
		{"IPv6", sockaddr(netip.MustParseAddrPort("[::]:443")), "[::]:443"},
		{"IPv6 without scope id (RFC 2133)", sockaddr(netip.MustParseAddrPort("[::1]:53"))[:24], "[::1]:53"},
		{"IPv4-mapped stays IPv6", sockaddr(netip.MustParseAddrPort("[::ffff:127.0.0.1]:80")), "[::ffff:127.0.0.1]:80"},
		{"IPv4 too short", sockaddr(netip.MustParseAddrPort("0.0.0.0:80"))[:8], ""},
		{"IPv6 too short", sockaddr(netip.MustParseAddrPort("[::]:80"))[:20], ""},
		{"unix socket", unixAddr, ""},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		ap, ok := ParseSockaddr(tt.b)
		got := ""
		if ok {
			got = ap.String()
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzParseSockaddr checks that every address reads back as encoded.
func FuzzParseSockaddr(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, uint16(80))
	f.Add(make([]byte, 16), uint16(0))
	f.Fuzz(func(t *testing.T, addr []byte, port uint16) {
		a, ok := netip.AddrFromSlice(addr)
		if !ok {
			return
		}
		ap := netip.AddrPortFrom(a, port)
		got, ok := ParseSockaddr(sockaddr(ap))
		if !ok || got != ap {
			t.Fatalf("ParseSockaddr(sockaddr(%s)) = %s, %v", ap, got, ok)
		}
	})
}

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
