package forward

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// sockopt is a socket option that --direct copies from the socket the
// server asked to bind to the host socket it gets instead.
type sockopt struct {
	name       string
	level, opt int
	// buffer: the kernel doubles what is set and reports the doubled
	// size, so half of what the server's socket reports is set.
	buffer bool
}

// copiedOptions are the options a server sets before bind that the host
// socket can take after its own bind and listen. Options of another
// protocol fail to read on one of the sockets and are skipped.
// IPV6_V6ONLY cannot change after bind; it is compared, not set.
var copiedOptions = []sockopt{
	{name: "SO_REUSEADDR", level: unix.SOL_SOCKET, opt: unix.SO_REUSEADDR},
	{name: "SO_REUSEPORT", level: unix.SOL_SOCKET, opt: unix.SO_REUSEPORT},
	{name: "SO_KEEPALIVE", level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE},
	{name: "SO_RCVBUF", level: unix.SOL_SOCKET, opt: unix.SO_RCVBUF, buffer: true},
	{name: "SO_SNDBUF", level: unix.SOL_SOCKET, opt: unix.SO_SNDBUF, buffer: true},
	{name: "SO_RCVLOWAT", level: unix.SOL_SOCKET, opt: unix.SO_RCVLOWAT},
	{name: "SO_BROADCAST", level: unix.SOL_SOCKET, opt: unix.SO_BROADCAST},
	{name: "SO_PRIORITY", level: unix.SOL_SOCKET, opt: unix.SO_PRIORITY},
	{name: "SO_TIMESTAMP", level: unix.SOL_SOCKET, opt: unix.SO_TIMESTAMP},
	{name: "TCP_NODELAY", level: unix.IPPROTO_TCP, opt: unix.TCP_NODELAY},
	{name: "TCP_DEFER_ACCEPT", level: unix.IPPROTO_TCP, opt: unix.TCP_DEFER_ACCEPT},
	{name: "TCP_FASTOPEN", level: unix.IPPROTO_TCP, opt: unix.TCP_FASTOPEN},
	{name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE},
	{name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL},
	{name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT},
	{name: "TCP_USER_TIMEOUT", level: unix.IPPROTO_TCP, opt: unix.TCP_USER_TIMEOUT},
	{name: "IP_TOS", level: unix.IPPROTO_IP, opt: unix.IP_TOS},
	{name: "IP_PKTINFO", level: unix.IPPROTO_IP, opt: unix.IP_PKTINFO},
	{name: "IP_RECVTOS", level: unix.IPPROTO_IP, opt: unix.IP_RECVTOS},
	{name: "IP_RECVERR", level: unix.IPPROTO_IP, opt: unix.IP_RECVERR},
	{name: "IPV6_TCLASS", level: unix.IPPROTO_IPV6, opt: unix.IPV6_TCLASS},
	{name: "IPV6_RECVPKTINFO", level: unix.IPPROTO_IPV6, opt: unix.IPV6_RECVPKTINFO},
	{name: "IPV6_RECVTCLASS", level: unix.IPPROTO_IPV6, opt: unix.IPV6_RECVTCLASS},
	{name: "IPV6_RECVERR", level: unix.IPPROTO_IPV6, opt: unix.IPV6_RECVERR},
}

// SocketOptions describe a socket: what it is and the options --direct
// copies.
type SocketOptions struct {
	Domain, Type, Protocol int
	// StatusFlags are the open file's flags (O_NONBLOCK).
	StatusFlags int
	// V6Only is IPV6_V6ONLY of an IPv6 socket.
	V6Only bool
	values map[string]int
}

// ReadSocketOptions reads the options of socket fd.
func ReadSocketOptions(fd int) (SocketOptions, error) {
	var o SocketOptions
	var err error
	if o.Domain, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
		return o, fmt.Errorf("reading the socket's domain: %w", err)
	}
	if o.Type, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return o, fmt.Errorf("reading the socket's type: %w", err)
	}
	if o.Protocol, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
		return o, fmt.Errorf("reading the socket's protocol: %w", err)
	}
	if o.StatusFlags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil {
		return o, fmt.Errorf("reading the socket's flags: %w", err)
	}
	if o.Domain == unix.AF_INET6 {
		v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY)
		o.V6Only = err == nil && v != 0
	}
	o.values = make(map[string]int, len(copiedOptions))
	for _, so := range copiedOptions {
		if v, err := unix.GetsockoptInt(fd, so.level, so.opt); err == nil {
			o.values[so.name] = v
		}
	}
	return o, nil
}

// Proto is the protocol of a stream (TCP, or MPTCP, which serves TCP
// clients) or datagram (UDP) socket of the internet families.
func (o SocketOptions) Proto() (Proto, bool) {
	if o.Domain != unix.AF_INET && o.Domain != unix.AF_INET6 {
		return "", false
	}
	switch {
	case o.Type == unix.SOCK_STREAM && (o.Protocol == unix.IPPROTO_TCP || o.Protocol == unix.IPPROTO_MPTCP):
		return TCP, true
	case o.Type == unix.SOCK_DGRAM && o.Protocol == unix.IPPROTO_UDP:
		return UDP, true
	}
	return "", false
}

// ReusePort reports whether SO_REUSEPORT is set.
func (o SocketOptions) ReusePort() bool { return o.values["SO_REUSEPORT"] != 0 }

// CopyTo gives socket fd (a host socket, bound and listening) the flags
// and options of o where they differ. It returns what could not be
// matched, for a debug line; none of it keeps the socket from working.
func (o SocketOptions) CopyTo(fd int) []string {
	var unmatched []string
	have, err := ReadSocketOptions(fd)
	if err != nil {
		return []string{err.Error()}
	}
	if have.Protocol != o.Protocol {
		// MPTCP (Go's listeners ask for it) cannot be had once the host
		// socket exists; a TCP listener serves the same clients.
		unmatched = append(unmatched, fmt.Sprintf("protocol %d instead of %d", have.Protocol, o.Protocol))
	}
	if have.Domain == o.Domain && have.V6Only != o.V6Only {
		unmatched = append(unmatched, fmt.Sprintf("IPV6_V6ONLY %v instead of %v", have.V6Only, o.V6Only))
	}
	if flags := have.StatusFlags&^unix.O_NONBLOCK | o.StatusFlags&unix.O_NONBLOCK; flags != have.StatusFlags {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags); err != nil {
			unmatched = append(unmatched, fmt.Sprintf("O_NONBLOCK: %v", err))
		}
	}
	for _, so := range copiedOptions {
		want, ok1 := o.values[so.name]
		got, ok2 := have.values[so.name]
		if !ok1 || !ok2 || want == got {
			continue
		}
		set := want
		if so.buffer {
			set = want / 2
		}
		if err := unix.SetsockoptInt(fd, so.level, so.opt, set); err != nil {
			unmatched = append(unmatched, fmt.Sprintf("%s=%d: %v", so.name, want, err))
		}
	}
	return unmatched
}

// SocketInode is the inode number of socket fd, which names it in
// /proc/PID/fd ("socket:[INODE]").
func SocketInode(fd int) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return 0, errors.New("not a socket")
	}
	return st.Ino, nil
}
