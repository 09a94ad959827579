package forward

import (
	"golang.org/x/sys/unix"
)

// clientGone reports whether client has gone away before its connection
// to the server was made: reset, or closed with nothing sent, so that
// there is nothing left to deliver. A client that sent its request and
// then closed its side still gets it delivered and its answer (it may
// only have half-closed).
func clientGone(client leg) bool {
	rc, err := client.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	rc.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return
		}
		switch info.State {
		case unix.BPF_TCP_CLOSE:
			gone = true
		case unix.BPF_TCP_CLOSE_WAIT:
			n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
			gone = err == nil && n == 0
		}
	})
	return gone
}
