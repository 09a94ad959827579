package forward

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// System calls that never block, made without telling the scheduler.
//
// unix.Syscall (and every read and write of package net) brackets the call
// with the runtime's entersyscall and exitsyscall, so that a call that
// blocks can give its P to another thread. That costs a little on every
// call, and more where it matters here: when the helper was idle (every P
// idle, which a relay waiting for the next datagram is), entersyscall wakes
// sysmon, which then polls every 20 µs for a millisecond before it sleeps
// again. Measured on the UDP echo through the relay, sysmon was a fifth of
// the helper's CPU time. A call on a non-blocking socket (Go's sockets are
// O_NONBLOCK) returns at once, with EAGAIN when it would wait: such a call
// can be made with RawSyscall, which skips both. Use these only on
// non-blocking descriptors, from a RawConn callback (which holds the
// descriptor's lock, so it is not closed and reused under the call).

// Each wrapper converts its pointers in the call to RawSyscall6 itself,
// which keeps what they point to alive and in place for the call (rule 4
// of package unsafe), and makes the call again while it is interrupted.

// rawRecvmmsg reads up to len(msgs) datagrams from the non-blocking socket
// fd (MSG_DONTWAIT besides).
func rawRecvmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// rawSendmmsg sends up to len(msgs) datagrams on the non-blocking socket
// fd and returns how many went.
func rawSendmmsg(fd uintptr, msgs []unix.Mmsghdr) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), unix.MSG_DONTWAIT, 0, 0)
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// rawSendmsg sends msg on the non-blocking socket fd.
func rawSendmsg(fd uintptr, msg *unix.Msghdr) unix.Errno {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(msg)), unix.MSG_DONTWAIT, 0, 0, 0)
		if e != unix.EINTR {
			return e
		}
	}
}

// rawRead reads from the non-blocking descriptor fd into b (not empty).
func rawRead(fd uintptr, b []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		if e != unix.EINTR {
			return int(n), e
		}
	}
}

// rawWrite writes b to the non-blocking descriptor fd: on a connected UDP
// socket, sends b as one datagram, an empty one included.
func rawWrite(fd uintptr, b []byte) (int, unix.Errno) {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
		if e != unix.EINTR {
			return int(n), e
		}
	}
}
