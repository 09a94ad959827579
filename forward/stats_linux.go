package forward

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AcceptCounter counts the TCP connections of host ports that no relay of
// nsbind's carries: on the native path the server accepts them itself, so
// nsbind sees them only in the kernel's socket table. Poll, called now and
// then on the host (sock_diag needs no privilege to list the sockets of
// one's own network namespace), notes every connection it has not seen
// yet, by its four-tuple, from either end: the server's (local port a host
// port) or a local client's (remote port a host port; after a close the
// client's end stays in TIME_WAIT for a minute, so short connections are
// seen too). A connection that opens and closes between two polls with
// both ends elsewhere is missed. Not safe for concurrent use.
type AcceptCounter struct {
	ports map[uint16]bool
	seen  map[connKey]bool
	// Conns counts the connections seen, per host port.
	Conns map[uint16]int64
}

type connKey struct {
	server, client netip.AddrPort
}

// NewAcceptCounter counts the connections of ports.
func NewAcceptCounter(ports []uint16) *AcceptCounter {
	c := &AcceptCounter{ports: make(map[uint16]bool), seen: make(map[connKey]bool), Conns: make(map[uint16]int64)}
	for _, p := range ports {
		c.ports[p] = true
	}
	return c
}

// inet_diag_req_v2 and inet_diag_msg of linux/inet_diag.h.
type inetDiagSockID struct {
	Sport, Dport [2]byte
	Src, Dst     [16]byte
	If           uint32
	Cookie       [2]uint32
}

type inetDiagReqV2 struct {
	Family, Protocol, Ext, Pad uint8
	States                     uint32
	ID                         inetDiagSockID
}

type inetDiagMsg struct {
	Family, State, Timer, Retrans uint8
	ID                            inetDiagSockID
	Expires, Rqueue, Wqueue, UID  uint32
	Inode                         uint32
}

const tcpListen = 10

// Poll reads the socket table once and counts the new connections.
func (c *AcceptCounter) Poll() error {
	now := make(map[connKey]bool, len(c.seen))
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := c.dump(family, now); err != nil {
			return err
		}
	}
	for k := range now {
		if !c.seen[k] {
			c.Conns[k.server.Port()]++
		}
	}
	c.seen = now
	return nil
}

func (c *AcceptCounter) dump(family uint8, now map[connKey]bool) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("opening sock_diag: %w", err)
	}
	defer unix.Close(fd)
	req := inetDiagReqV2{Family: family, Protocol: unix.IPPROTO_TCP, States: ^uint32(0) &^ (1 << tcpListen)}
	hdr := unix.NlMsghdr{Len: uint32(unix.SizeofNlMsghdr + unsafe.Sizeof(req)), Type: unix.SOCK_DIAG_BY_FAMILY,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_DUMP, Seq: 1}
	msg := make([]byte, hdr.Len)
	*(*unix.NlMsghdr)(unsafe.Pointer(&msg[0])) = hdr
	*(*inetDiagReqV2)(unsafe.Pointer(&msg[unix.SizeofNlMsghdr])) = req
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("asking sock_diag: %w", err)
	}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("reading sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return fmt.Errorf("reading sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				return fmt.Errorf("reading sock_diag: error message")
			}
			if len(m.Data) < int(unsafe.Sizeof(inetDiagMsg{})) {
				continue
			}
			d := (*inetDiagMsg)(unsafe.Pointer(&m.Data[0]))
			c.note(family, d, now)
		}
	}
}

func (c *AcceptCounter) note(family uint8, d *inetDiagMsg, now map[connKey]bool) {
	addr := func(b [16]byte) netip.Addr {
		if family == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16(b).Unmap()
	}
	src := netip.AddrPortFrom(addr(d.ID.Src), binary.BigEndian.Uint16(d.ID.Sport[:]))
	dst := netip.AddrPortFrom(addr(d.ID.Dst), binary.BigEndian.Uint16(d.ID.Dport[:]))
	switch {
	case c.ports[src.Port()]:
		now[connKey{server: src, client: dst}] = true
	case c.ports[dst.Port()] && dst.Addr().IsLoopback():
		now[connKey{server: dst, client: src}] = true
	}
}
