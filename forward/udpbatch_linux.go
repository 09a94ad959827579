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
//
// serve handles each batch inside the RawConn's read callback and waits
// again from there. A batch short of hostBatch emptied the socket's queue,
// and the runtime's poller (edge-triggered) reports the next datagram that
// arrives, so serve waits at once instead of reading again only to get
// EAGAIN: one recvmmsg per wake-up, not two. That holds only within one
// RawConn.Read call, which is why the batches are handled inside it: a new
// call forgets a readiness the poller reported before it (poll's
// prepareRead), and must read first.
type batchReader struct {
	rc     syscall.RawConn
	msgs   [hostBatch]unix.Mmsghdr
	iovs   [hostBatch]unix.Iovec
	names  [hostBatch]unix.RawSockaddrInet6
	oobs   [hostBatch][groOOB]byte
	bufs   []byte // hostBatch buffers of maxDatagram bytes
	err    error
	handle func(n int) // of serve
	fn     func(fd uintptr) bool
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
		h.Control = &br.oobs[i][0]
	}
	// Best effort: without it, a sender's run arrives cut into its
	// datagrams, as from any other sender.
	rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) })
	br.fn = func(fd uintptr) bool {
		for {
			for i := range br.msgs {
				br.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
				br.msgs[i].Hdr.SetControllen(groOOB)
			}
			n, e := rawRecvmmsg(fd, br.msgs[:])
			switch e {
			case unix.EAGAIN:
				return false
			case 0:
			default:
				br.err = e
				return true
			}
			br.handle(n)
			if n < hostBatch {
				return false // wait for the poller's report
			}
		}
	}
	return br, nil
}

// serve waits for datagrams and hands each batch of them (as many as wait,
// up to hostBatch) to handle, which reads them with datagram, until reading
// fails: it returns that error (never nil on Linux).
func (br *batchReader) serve(handle func(n int)) error {
	br.handle, br.err = handle, nil
	err := br.rc.Read(br.fn)
	br.handle = nil
	if err == nil && br.err != nil {
		err = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmmsg", br.err)}
	}
	return err
}

// groOOB is room for the control message of UDP_GRO: a cmsghdr and an
// int (unix.CmsgSpace(4)).
const groOOB = 24

// from is the sender of the i-th message of the latest batch.
func (br *batchReader) from(i int) netip.AddrPort { return sockaddrAddrPort(&br.names[i]) }

// appendDatagrams appends the datagrams of the i-th message of the latest
// batch to dgrams. A message is one datagram, or, with UDP_GRO, a run of
// datagrams its sender sent with UDP_SEGMENT in one call: the kernel
// keeps such a run whole up to a socket that asks for it, and says the
// size it was cut at (the last may be shorter). The relay cuts it the same
// way, so that the server gets the datagrams the client sent.
func (br *batchReader) appendDatagrams(dgrams [][]byte, i int) [][]byte {
	b := br.bufs[i*maxDatagram : i*maxDatagram+int(br.msgs[i].Len)]
	size := 0
	h := &br.msgs[i].Hdr
	if h.Controllen >= uint64(unix.CmsgLen(4)) {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&br.oobs[i][0]))
		if c.Level == unix.SOL_UDP && c.Type == unix.UDP_GRO {
			size = int(*(*int32)(unsafe.Pointer(&br.oobs[i][unix.CmsgLen(0)])))
		}
	}
	if size <= 0 || size >= len(b) {
		return append(dgrams, b)
	}
	for len(b) > size {
		dgrams = append(dgrams, b[:size:size])
		b = b[size:]
	}
	return append(dgrams, b)
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

// clientSender is a flow's client as the host socket sends to it: its
// address made once, as the kernel takes it.
type clientSender struct {
	rc      syscall.RawConn // the host socket's
	name    unix.RawSockaddrInet6
	namelen uint32
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
	return cs
}

// replyBatch is how many replies of the server one recvmmsg takes from a
// flow's socket: more than one, so that a short batch tells that the
// socket's queue is empty (see batchReader), and few, as each takes a
// buffer that fits any datagram.
const replyBatch = 4

// replyBuffers are the buffers of one batch of replies, from the relay's
// pool: a flow takes them only while it reads and sends a batch, so that a
// waiting flow holds none.
type replyBuffers struct {
	msgs [replyBatch]unix.Mmsghdr
	iovs [replyBatch]unix.Iovec
	buf  [replyBatch * maxDatagram]byte
}

func newReplyBuffers() any { return new(replyBuffers) }

// replyReader moves the server's replies from a flow's socket to the
// client, a batch at a time: recvmmsg on the flow's socket, sendmmsg on
// the host socket. Like batchReader, it handles the batches inside the
// RawConn's read callback and waits after a short batch without reading
// again. It is used by the flow's goroutine only.
type replyReader struct {
	f    *udpFlow
	conn *net.UDPConn
	rc   syscall.RawConn // conn's
	err  unix.Errno      // of reading
	fn   func(fd uintptr) bool
	// unconfirmed is set when a batch came while the flow's family was
	// not confirmed yet
	unconfirmed bool
	// of sending a batch: what is left to send, its bytes sent, and the
	// latest error
	left   []unix.Mmsghdr
	bytes  int
	sent   int
	serr   unix.Errno
	sendFn func(fd uintptr) bool
}

func newReplyReader(f *udpFlow, conn *net.UDPConn) (*replyReader, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	rd := &replyReader{f: f, conn: conn, rc: rc}
	pool := &f.s.bufs
	rd.fn = func(fd uintptr) bool {
		for {
			b := pool.Get().(*replyBuffers)
			for i := range b.msgs {
				b.iovs[i].Base = &b.buf[i*maxDatagram]
				b.iovs[i].SetLen(maxDatagram)
				h := &b.msgs[i].Hdr
				h.Iov = &b.iovs[i]
				h.SetIovlen(1)
				h.Name, h.Namelen = nil, 0
			}
			n, e := rawRecvmmsg(fd, b.msgs[:])
			if e != 0 {
				pool.Put(b)
				if e == unix.EAGAIN {
					return false
				}
				rd.err = e
				return true
			}
			rd.f.s.flows.touch(rd.f.entry)
			rd.toClient(b, n)
			pool.Put(b)
			if !rd.f.confirmed.Load() {
				// serve confirms the family outside the callback: that
				// takes f.mu, under which close waits for this
				// callback to end.
				rd.unconfirmed = true
				return true
			}
			if n < replyBatch {
				return false // wait for the poller's report
			}
		}
	}
	rd.sendFn = func(fd uintptr) bool {
		for len(rd.left) > 0 {
			k, e := rawSendmmsg(fd, rd.left)
			switch e {
			case unix.EAGAIN:
				return false
			case 0:
				for _, m := range rd.left[:k] {
					rd.bytes += int(m.Len)
				}
				rd.sent += k
				rd.left = rd.left[k:]
			default:
				// The first one left failed: drop it, as a send of
				// its own would have, and go on with the rest.
				rd.serr = e
				rd.left = rd.left[1:]
			}
		}
		return true
	}
	return rd, nil
}

// toClient sends the n replies in b to the client.
func (rd *replyReader) toClient(b *replyBuffers, n int) {
	cs := rd.f.out
	for i := range n {
		b.iovs[i].SetLen(int(b.msgs[i].Len))
		h := &b.msgs[i].Hdr
		h.Name, h.Namelen = (*byte)(unsafe.Pointer(&cs.name)), cs.namelen
		b.msgs[i].Len = 0
	}
	rd.left, rd.bytes, rd.sent, rd.serr = b.msgs[:n], 0, 0, 0
	err := cs.rc.Write(rd.sendFn)
	rd.left = nil
	if err == nil && rd.serr != 0 {
		err = os.NewSyscallError("sendmmsg", rd.serr)
	}
	rd.f.s.countOut(rd.bytes, rd.sent)
	if err != nil {
		rd.f.replyFailed(err)
	}
}

// serve moves replies until reading the flow's socket fails, and returns
// that error, or nil after the first replies of a flow not confirmed yet.
func (rd *replyReader) serve() error {
	rd.err, rd.unconfirmed = 0, false
	err := rd.rc.Read(rd.fn)
	if err == nil && rd.unconfirmed {
		rd.f.confirm(rd.conn)
		return nil
	}
	if err == nil && rd.err != 0 {
		err = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmmsg", rd.err)}
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
