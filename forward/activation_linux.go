package forward

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Inherited returns the sockets passed to the process pid through socket
// activation, read from env as sd_listen_fds(3) reads them: none when
// LISTEN_PID is unset or is not pid (the variables were meant for another
// process, e.g. a parent that let them leak), else descriptors
// 3..3+LISTEN_FDS-1. Each must be an IPv4 or IPv6 TCP socket that listens
// or a bound UDP socket; anything else (a unix socket, a pipe, a closed
// descriptor, a connected or unbound socket, SCTP or MPTCP) is an error, as
// are a LISTEN_FDS or LISTEN_PID that is not a number and a LISTEN_FDNAMES
// with a different count. Every descriptor is made close-on-exec, so only
// what nsbind hands on explicitly reaches the helper or the server. Call it
// from the parent before it binds or opens anything else, with os.Getpid().
func Inherited(env []string, pid int) ([]ActivatedSocket, error) {
	pidText, ok := lookupEnv(env, EnvListenPID)
	if !ok {
		return nil, nil
	}
	p, err := strconv.Atoi(pidText)
	if err != nil || p <= 0 {
		return nil, fmt.Errorf("socket activation: %s=%q is not a process id", EnvListenPID, pidText)
	}
	if p != pid {
		return nil, nil
	}
	nText, ok := lookupEnv(env, EnvListenFDs)
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(nText)
	if err != nil || n < 0 || n > maxListenFDs {
		return nil, fmt.Errorf("socket activation: %s=%q is not a number of descriptors (0 to %d)", EnvListenFDs, nText, maxListenFDs)
	}
	var names []string
	if namesText, ok := lookupEnv(env, EnvListenFDNames); ok {
		names = strings.Split(namesText, ":")
		if len(names) != n {
			return nil, fmt.Errorf("socket activation: %s=%q names %d descriptors but %s=%d", EnvListenFDNames, namesText, len(names), EnvListenFDs, n)
		}
	}
	// Close-on-exec first, all of them, as sd_listen_fds does, whatever
	// the checks below find.
	for fd := ListenFDsStart; fd < ListenFDsStart+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); errors.Is(err, unix.EBADF) {
			return nil, fmt.Errorf("socket activation: %s=%d but descriptor %d is not open", EnvListenFDs, n, fd)
		} else if err != nil {
			return nil, fmt.Errorf("socket activation: descriptor %d: %w", fd, err)
		}
	}
	out := make([]ActivatedSocket, 0, n)
	for i := range n {
		a := ActivatedSocket{FD: ListenFDsStart + i}
		if names != nil {
			a.Name = names[i]
		}
		if err := inspect(&a); err != nil {
			what := fmt.Sprintf("descriptor %d", a.FD)
			if a.Name != "" {
				what += fmt.Sprintf(" (%q)", a.Name)
			}
			return nil, fmt.Errorf("socket activation: %s: %w", what, err)
		}
		out = append(out, a)
	}
	for i := range out {
		out[i].File = os.NewFile(uintptr(out[i].FD), "listen-fd-"+strconv.Itoa(out[i].FD))
	}
	return out, nil
}

// inspect fills in a's protocol and address from the kernel, or says why
// nsbind cannot serve it.
func inspect(a *ActivatedSocket) error {
	fd := a.FD
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if errors.Is(err, unix.ENOTSOCK) {
		return errors.New("is not a socket")
	}
	if err != nil {
		return fmt.Errorf("reading its socket type: %w", err)
	}
	family, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("reading its address family: %w", err)
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return fmt.Errorf("is a %s socket; only IPv4 and IPv6 sockets can be published", familyName(family))
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return fmt.Errorf("reading its protocol: %w", err)
	}
	switch {
	case typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP:
		a.Proto = TCP
		// A stream socket that does not listen is a connection (Accept=yes
		// in the socket unit), which nsbind does not take.
		on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err != nil {
			return fmt.Errorf("reading SO_ACCEPTCONN: %w", err)
		}
		if on == 0 {
			return errors.New("is a TCP socket that does not listen (a socket unit with Accept=yes passes connections; use Accept=no)")
		}
	case typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
		a.Proto = UDP
		// A connected UDP socket only hears its one peer.
		if _, err := unix.Getpeername(fd); err == nil {
			return errors.New("is a connected UDP socket")
		}
	case typ == unix.SOCK_STREAM && proto == unix.IPPROTO_MPTCP:
		// The relay splices, and MPTCP sockets cannot splice.
		return errors.New("is an MPTCP socket; use a TCP one (no SocketProtocol=mptcp)")
	default:
		return fmt.Errorf("is neither a TCP nor a UDP socket (type %d, protocol %d)", typ, proto)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("reading its address: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		a.Addr = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		a.Addr = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		v6only, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		if err != nil {
			return fmt.Errorf("reading IPV6_V6ONLY: %w", err)
		}
		a.V6Only = v6only != 0
	default:
		return fmt.Errorf("has an address of unexpected type %T", sa)
	}
	if a.Addr.Port() == 0 {
		return fmt.Errorf("is a %s socket that is not bound", a.Proto)
	}
	return nil
}

func familyName(f int) string {
	switch f {
	case unix.AF_UNIX:
		return "unix"
	case unix.AF_NETLINK:
		return "netlink"
	case unix.AF_PACKET:
		return "packet"
	case unix.AF_VSOCK:
		return "vsock"
	}
	return "family " + strconv.Itoa(f)
}

// ActivationFDs puts the descriptors fds at 3, 4, ... in order, without
// close-on-exec, for the server of --socket-activation; every other
// descriptor of fds is made close-on-exec, so the server gets each socket
// once. The exec step calls it right before execve, then adds
// ActivationEnv. It replaces whatever was at 3..3+len(fds)-1, so every
// descriptor in that range must be the caller's own: one of fds, or one
// it no longer needs (move the exec report pipe away first). A descriptor of
// the Go runtime there (its epoll instance, or the cgroup files it keeps
// open from its start to size GOMAXPROCS) would be swapped under it; the
// exec step avoids that when it is started with the sockets at descriptors
// right after its fixed ones, below anything its runtime opens.
func ActivationFDs(fds []int) error {
	end := ListenFDsStart + len(fds)
	// Copies above the target range first, so moving one socket cannot
	// overwrite another that is still to be moved (3→4 while 4→5).
	tmp := make([]int, 0, len(fds))
	defer func() {
		for _, t := range tmp {
			unix.Close(t)
		}
	}()
	for _, fd := range fds {
		t, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, end)
		if err != nil {
			return fmt.Errorf("moving socket descriptor %d: %w", fd, err)
		}
		tmp = append(tmp, t)
	}
	for _, fd := range fds {
		if fd < ListenFDsStart || fd >= end {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
				return fmt.Errorf("marking socket descriptor %d close-on-exec: %w", fd, err)
			}
		}
	}
	for i, t := range tmp {
		if err := unix.Dup3(t, ListenFDsStart+i, 0); err != nil {
			return fmt.Errorf("moving socket descriptor %d to %d: %w", fds[i], ListenFDsStart+i, err)
		}
	}
	return nil
}
