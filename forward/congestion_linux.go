package forward

import (
	"net"

	"golang.org/x/sys/unix"
)

// loopbackCongestion makes the connections a relay accepts on a loopback
// listener use reno, which the kernel lets any process choose: they
// inherit the listener's choice. The host's default is often bbr, which
// paces each connection with timers; on loopback, where nothing is lost or
// queued, that costs the relay's sends time for nothing. A listener that
// takes clients from other machines keeps the host's default.
func loopbackCongestion(ln *net.TCPListener) {
	rc, err := ln.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		if !onLoopback(int(fd)) {
			return
		}
		unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, "reno")
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
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Addr[0] == 127
	case *unix.SockaddrInet6:
		return a.Addr == [16]byte{15: 1}
	}
	return false
}
