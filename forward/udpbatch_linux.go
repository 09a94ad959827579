package forward

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hostBatch is how many datagrams one recvmmsg(2) takes from the host
// socket. Each has a buffer that fits any datagram; only the pages a
// datagram fills are ever touched, so a batch of small datagrams costs a
// page each.
const hostBatch = 32

// maxSegmented bounds the payload of one UDP_SEGMENT send: 65535 less the
// IPv4 and UDP headers (IPv6 allows a little more; the lower bound serves
// both families).
const maxSegmented = 65535 - 20 - 8

// maxSegments is the most datagrams the kernel splits one send into
// (UDP_MAX_SEGMENTS in linux/udp.h, 64 before Linux 6.10).
const maxSegments = 64

// batchReader reads the host socket a batch of datagrams at a time with
// recvmmsg(2): one system call, and one wake-up, for every datagram that
// waits, as a bulk sender (iperf3 -u, QUIC) leaves many.
type batchReader struct {
	rc    syscall.RawConn
	msgs  [hostBatch]unix.Mmsghdr
	iovs  [hostBatch]unix.Iovec
	names [hostBatch]unix.RawSockaddrInet6
	bufs  []byte // hostBatch buffers of maxDatagram bytes
	n     int    // datagrams in the latest batch
	err   error
	fn    func(fd uintptr) bool
}

func newBatchReader(c *net.UDPConn) (*batchReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	br := &batchReader{rc: rc, bufs: make([]byte, hostBatch*maxDatagram)}
	for i := range br.msgs {
		br.iovs[i].Base = &br.bufs[i*maxDatagram]
		br.iovs[i].SetLen(maxDatagram)
		h := &br.msgs[i].Hdr
		h.Iov = &br.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&br.names[i]))
	}
	br.fn = func(fd uintptr) bool {
		for i := range br.msgs {
			br.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		}
		n, e := rawRecvmmsg(fd, br.msgs[:])
		switch e {
		case unix.EAGAIN:
			return false
		case 0:
			br.n, br.err = n, nil
		default:
			br.n, br.err = 0, e
		}
		return true
	}
	return br, nil
}

// read waits for datagrams and reads as many as wait, up to hostBatch; it
// returns how many.
func (br *batchReader) read() (int, error) {
	err := br.rc.Read(br.fn)
	if err == nil && br.err != nil {
		err = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmmsg", br.err)}
	}
	if err != nil {
		return 0, err
	}
	return br.n, nil
}

// datagram is the i-th datagram of the latest batch and its sender.
func (br *batchReader) datagram(i int) ([]byte, netip.AddrPort) {
	b := br.bufs[i*maxDatagram : i*maxDatagram+int(br.msgs[i].Len)]
	return b, sockaddrAddrPort(&br.names[i])
}

// sockaddrAddrPort reads a sender's address as Go's own ReadFrom does: an
// IPv4-mapped address of a dual-stack socket stays 16 bytes long, a scope
// becomes the zone.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := uint16(sa.Port>>8 | sa.Port<<8) // network byte order
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}

// segmenter sends runs of same-sized datagrams to a connected socket with
// one sendmsg(2) and a UDP_SEGMENT control message: the kernel builds one
// packet and cuts it into the datagrams only where it delivers them, so a
// run costs one pass down the stack instead of one per datagram. The
// receiving socket gets each datagram whole, as if sent alone. It is used
// from one goroutine (the host socket's reader).
type segmenter struct {
	off  *atomic.Bool // set once the kernel refuses segmentation
	iovs [maxSegments]unix.Iovec
	oob  [24]byte // room for one cmsghdr and a uint16 (unix.CmsgSpace(2))
	msg  unix.Msghdr
	serr error
	fn   func(fd uintptr) bool
	// wb, wn and wfn are write's (one datagram alone).
	wb  []byte
	wn  int
	wfn func(fd uintptr) bool
}

func newSegmenter(off *atomic.Bool) *segmenter {
	s := &segmenter{off: off}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&s.oob[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	s.msg.Iov = &s.iovs[0]
	s.msg.Control = &s.oob[0]
	s.msg.SetControllen(unix.CmsgSpace(2))
	s.fn = func(fd uintptr) bool {
		switch e := rawSendmsg(fd, &s.msg); e {
		case unix.EAGAIN:
			return false
		case 0:
			s.serr = nil
		default:
			s.serr = e
		}
		return true
	}
	s.wfn = func(fd uintptr) bool {
		n, e := rawWrite(fd, s.wb)
		if e == unix.EAGAIN {
			return false
		}
		s.wn, s.serr = n, nil
		if e != 0 {
			s.serr = e
		}
		return true
	}
	return s
}

// run is how many of dgrams, from the first, one send can carry: the
// same size as the first (which is not empty), but the last of them, which
// may be shorter.
func (s *segmenter) run(dgrams [][]byte) int {
	size := len(dgrams[0])
	if size == 0 || s.off.Load() {
		return 1
	}
	total, n := 0, 0
	for n < len(dgrams) && n < maxSegments {
		l := len(dgrams[n])
		if l > size || l == 0 || total+l > maxSegmented {
			break
		}
		total += l
		n++
		if l < size {
			break
		}
	}
	return n
}

// write sends b alone on the connected socket c (whose RawConn is rc).
func (s *segmenter) write(_ *net.UDPConn, rc syscall.RawConn, b []byte) (int, error) {
	s.wb = b
	err := rc.Write(s.wfn)
	s.wb = nil
	if err == nil && s.serr != nil {
		err = &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("write", s.serr)}
	}
	if err != nil {
		return 0, err
	}
	return s.wn, nil
}

// send sends dgrams (a run as run returns it) on the connected socket
// whose RawConn is rc with one system call. Nothing is sent when it fails.
func (s *segmenter) send(rc syscall.RawConn, dgrams [][]byte) error {
	for i, d := range dgrams {
		s.iovs[i].Base = &d[0]
		s.iovs[i].SetLen(len(d))
	}
	s.msg.SetIovlen(len(dgrams))
	*(*uint16)(unsafe.Pointer(&s.oob[unix.CmsgLen(0)])) = uint16(len(dgrams[0]))
	err := rc.Write(s.fn)
	for i := range dgrams {
		s.iovs[i].Base = nil // keep no buffer alive
	}
	if err == nil {
		err = s.serr
	}
	if err == nil {
		return nil
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case unix.EINVAL, unix.EIO, unix.EOPNOTSUPP, unix.ENOPROTOOPT, unix.EMSGSIZE:
			// A kernel or a route that cannot segment: datagrams go
			// one at a time from now on.
			s.off.Store(true)
		}
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmsg", errno)}
	}
	return err
}

// readNonBlocking reads from the non-blocking descriptor fd into b.
func readNonBlocking(fd uintptr, b []byte) (int, error) {
	n, e := rawRead(fd, b)
	if e != 0 {
		return n, e
	}
	return n, nil
}

// clientSender sends a flow's replies to its client from the host socket,
// with the client's address made once, as the kernel takes it. It is used
// by the flow's goroutine only.
type clientSender struct {
	rc      syscall.RawConn // the host socket's
	name    unix.RawSockaddrInet6
	namelen uint32
	b       []byte
	err     unix.Errno
	fn      func(fd uintptr) bool
}

// newClientSender makes the sender of replies to client on the host socket
// of s.
func newClientSender(s *udpServer, client netip.AddrPort) *clientSender {
	cs := &clientSender{rc: s.hostRC}
	if s.host6 {
		cs.name.Family = unix.AF_INET6
		cs.name.Addr = client.Addr().As16()
		cs.name.Port = client.Port()>>8 | client.Port()<<8
		if z := client.Addr().Zone(); z != "" {
			if id, err := strconv.ParseUint(z, 10, 32); err == nil {
				cs.name.Scope_id = uint32(id)
			} else if ifi, err := net.InterfaceByName(z); err == nil {
				cs.name.Scope_id = uint32(ifi.Index)
			}
		}
		cs.namelen = unix.SizeofSockaddrInet6
	} else {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&cs.name))
		sa4.Family = unix.AF_INET
		sa4.Addr = client.Addr().Unmap().As4()
		sa4.Port = client.Port()>>8 | client.Port()<<8
		cs.namelen = unix.SizeofSockaddrInet4
	}
	cs.fn = func(fd uintptr) bool {
		_, e := rawSendto(fd, cs.b, unsafe.Pointer(&cs.name), cs.namelen)
		if e == unix.EAGAIN {
			return false
		}
		cs.err = e
		return true
	}
	return cs
}

// send sends b to the client.
func (cs *clientSender) send(b []byte) error {
	cs.b = b
	err := cs.rc.Write(cs.fn)
	cs.b = nil
	if err == nil && cs.err != 0 {
		err = &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendto", cs.err)}
	}
	return err
}

// hostFamily reports whether the host socket c is an IPv6 one, and returns
// its RawConn.
func hostFamily(c *net.UDPConn) (syscall.RawConn, bool, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, false, err
	}
	var family int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, false, err
	}
	if serr != nil {
		return nil, false, serr
	}
	return rc, family == unix.AF_INET6, nil
}
