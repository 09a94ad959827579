package helper

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/nsutil"
)

// A truthful getsockname. A host socket the server got is bound to the
// host port, so getsockname(2) on it, and on every connection accepted
// from it, reports the host port: with -p 53:5353 a server that compares
// the local address of a connection with the one it bound (dnsmasq in its
// default wildcard mode does, for TCP) drops every connection. When a
// published port's host port differs from its inside port, the exec step
// traps getsockname too, and the director answers it for sockets of the
// host's network namespace whose local port is such a host port with the
// inside port instead; every other call runs in the kernel as usual.
//
// Each trapped call is a round trip to the helper (about 25 µs here,
// README: Performance), and Go's net package calls getsockname for every
// connection it accepts (fact 16 of DESIGN.md): a Go program is not
// trapped, as Go servers do not compare the local address (the exec step
// knows one by its .go.buildinfo section). A program that a script or a
// non-Go launcher starts is trapped as its launcher is.

// rewrites maps the host ports of published sockets the server may get
// (TCP; UDP with --direct-udp) to their inside ports, where they differ.
func (d *director) rewrites() map[uint16]uint16 {
	m := make(map[uint16]uint16)
	for i, sc := range d.cfg.Sockets {
		if d.handovers.h.Socket(i).Fixed {
			continue
		}
		if p := sc.Host.Port(); p != sc.Inside && p != 0 {
			m[p] = sc.Inside
		}
	}
	return m
}

// sendTrapConfig tells the exec step what to trap, on the helper's end of
// the bind notification pair, before the exec step starts.
func (d *director) sendTrapConfig(notify *os.File) {
	trap := len(d.rewrite) > 0 && !isGoProgram(d.cfg.Command[0])
	if trap {
		d.logger.Debug("--direct: trapping getsockname for the inside ports", "ports", d.rewrite)
	}
	if err := nsutil.SendTrapConfig(notify, trap); err != nil {
		d.logger.Debug("--direct: telling the exec step what to trap", "err", err)
	}
}

// isGoProgram reports whether command is a Go binary: it has a
// .go.buildinfo section.
func isGoProgram(command string) bool {
	path, err := nsutil.LookPath(command)
	if err != nil {
		return false
	}
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Section(".go.buildinfo") != nil
}

// getsockname answers one trapped getsockname(2).
func (d *director) getsockname(c *nsutil.BindCall) {
	l := d.listener
	sfd, err := l.ServerSocket(c)
	if errors.Is(err, nsutil.ErrCallGone) {
		return
	}
	if err != nil {
		l.Continue(c)
		return
	}
	defer unix.Close(sfd)
	sa, ok := d.insideSockname(sfd)
	if !ok {
		l.Continue(c)
		return
	}
	if err := l.AnswerGetsockname(c, sa); err != nil {
		d.logger.Debug("--direct: answering getsockname", "pid", c.Pid, "err", err)
		l.Continue(c)
	}
}

// insideSockname is the local address of fd as a raw sockaddr with the
// inside port, when fd is a socket of the host with a published host port
// that differs from its inside port.
func (d *director) insideSockname(fd int) ([]byte, bool) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, false
	}
	var raw []byte
	var port int
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		port = a.Port
		raw = make([]byte, unix.SizeofSockaddrInet4)
		binary.NativeEndian.PutUint16(raw, unix.AF_INET)
		copy(raw[4:8], a.Addr[:])
	case *unix.SockaddrInet6:
		port = a.Port
		raw = make([]byte, unix.SizeofSockaddrInet6)
		binary.NativeEndian.PutUint16(raw, unix.AF_INET6)
		copy(raw[8:24], a.Addr[:])
		binary.NativeEndian.PutUint32(raw[24:], a.ZoneId)
	default:
		return nil, false
	}
	inside, ok := d.rewrite[uint16(port)]
	if !ok || !d.onHost(fd) {
		return nil, false
	}
	binary.BigEndian.PutUint16(raw[2:4], inside)
	return raw, true
}

// onHost reports whether socket fd belongs to the host's network
// namespace, the one of the published host sockets.
func (d *director) onHost(fd int) bool {
	c, err := netnsCookie(fd)
	return err == nil && c == d.hostNetns
}

// soNetnsCookie is SO_NETNS_COOKIE (Linux 5.14), which golang.org/x/sys
// does not name: the cookie of a socket's network namespace, readable with
// no privilege (SIOCGSKNS needs CAP_NET_ADMIN over the namespace, which
// the helper lacks for the host's).
const soNetnsCookie = 71

// netnsCookie is the cookie of the network namespace of socket fd.
func netnsCookie(fd int) (uint64, error) {
	var c uint64
	size := uint32(8)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, soNetnsCookie,
		uintptr(unsafe.Pointer(&c)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return 0, errno
	}
	return c, nil
}
