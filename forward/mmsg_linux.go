package forward

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSize is how many datagrams one recvmmsg or sendmmsg moves at most.
const batchSize = 8

// mmsgBatch is the memory of one recvmmsg/sendmmsg call: batchSize
// datagram buffers with their headers and addresses.
type mmsgBatch struct {
	hdrs  [batchSize]unix.Mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6
	bufs  [batchSize][]byte
}

// batchPool holds batches, so a socket that waits holds none.
var batchPool = sync.Pool{New: func() any {
	m := new(mmsgBatch)
	for i := range m.bufs {
		m.bufs[i] = make([]byte, maxDatagram)
		m.iovs[i].Base = &m.bufs[i][0]
		m.hdrs[i].Hdr.Iov = &m.iovs[i]
		m.hdrs[i].Hdr.SetIovlen(1)
	}
	return m
}}

// recvmmsg reads up to batchSize datagrams from fd into m without waiting;
// it returns the count, or EAGAIN when none is there.
func (m *mmsgBatch) recvmmsg(fd uintptr, withAddr bool) (int, syscall.Errno) {
	for i := range m.hdrs {
		m.iovs[i].SetLen(maxDatagram)
		if withAddr {
			m.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
			m.hdrs[i].Hdr.Namelen = unix.SizeofSockaddrInet6
		} else {
			m.hdrs[i].Hdr.Name = nil
			m.hdrs[i].Hdr.Namelen = 0
		}
		m.hdrs[i].Hdr.Flags = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[0])), batchSize, unix.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), 0
	}
}

// datagram is the i-th datagram that recvmmsg read.
func (m *mmsgBatch) datagram(i int) []byte { return m.bufs[i][:m.hdrs[i].Len] }

// addr is the sender of the i-th datagram that recvmmsg read.
func (m *mmsgBatch) addr(i int) netip.AddrPort {
	sa := &m.names[i]
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:]))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			// A link-local client: keep the interface it came from.
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	return netip.AddrPort{}
}

// readHostBatch reads the host socket with recvmmsg until it is closed,
// handing each datagram to its flow.
func (s *udpServer) readHostBatch() error {
	rc, err := s.host.SyscallConn()
	if err != nil {
		return err
	}
	backoff := time.Duration(0)
	fixed := batchPool.New().(*mmsgBatch)
	for {
		var (
			m     *mmsgBatch
			n     int
			errno syscall.Errno
		)
		err := rc.Read(func(fd uintptr) bool {
			m = fixed
			n, errno = m.recvmmsg(fd, true)
			if errno == syscall.EAGAIN {
				m = nil
				return false
			}
			return true
		})
		if err == nil && errno != 0 {
			err = os.NewSyscallError("recvmmsg", errno)
		}
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			if d, ok := acceptBackoff(err, backoff); ok {
				backoff = d
				select {
				case <-time.After(d):
				case <-s.ctx.Done():
				}
				continue
			}
			return err
		}
		backoff = 0
		for i := range n {
			s.fromHost(m.addr(i), m.datagram(i))
		}
	}
}

// setAddr makes ap the destination of every datagram of m for sendmmsg.
func (m *mmsgBatch) setAddr(n int, ap netip.AddrPort) {
	var sa unix.RawSockaddrInet6
	namelen := uint32(unix.SizeofSockaddrInet6)
	if ap.Addr().Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa))
		sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		sa4.Addr = ap.Addr().As4()
		namelen = unix.SizeofSockaddrInet4
	} else {
		sa.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		sa.Addr = ap.Addr().As16()
		if z := ap.Addr().Zone(); z != "" {
			if i, err := strconv.ParseUint(z, 10, 32); err == nil {
				sa.Scope_id = uint32(i)
			}
		}
	}
	for i := range n {
		m.names[i] = sa
		m.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&m.names[i]))
		m.hdrs[i].Hdr.Namelen = namelen
		m.iovs[i].SetLen(int(m.hdrs[i].Len))
	}
}

// sendmmsg sends datagrams [from, n) of m without waiting; it returns how
// many went, or EAGAIN when the socket's buffer is full.
func (m *mmsgBatch) sendmmsg(fd uintptr, from, n int) (int, syscall.Errno) {
	for {
		sent, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&m.hdrs[from])), uintptr(n-from), unix.MSG_DONTWAIT, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(sent), 0
	}
}

// replyBatch moves the replies of the server waiting on the flow's socket
// to the client: one recvmmsg, one sendmmsg.
func (f *udpFlow) replyBatch(conn *net.UDPConn, rc syscall.RawConn) error {
	s := f.s
	var (
		m     *mmsgBatch
		n     int
		errno syscall.Errno
	)
	err := rc.Read(func(fd uintptr) bool {
		m = batchPool.Get().(*mmsgBatch)
		n, errno = m.recvmmsg(fd, false)
		if errno == syscall.EAGAIN {
			batchPool.Put(m)
			m = nil
			return false
		}
		return true
	})
	if err == nil && errno != 0 {
		err = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmmsg", errno)}
	}
	if err != nil {
		if m != nil {
			batchPool.Put(m)
		}
		return err
	}
	defer batchPool.Put(m)
	s.touch(f, s.now())
	if !f.confirmed.Load() {
		f.confirm(conn)
	}
	m.setAddr(n, f.client)
	sent := 0
	for sent < n {
		var k int
		err := s.hostRC.Write(func(fd uintptr) bool {
			k, errno = m.sendmmsg(fd, sent, n)
			return errno != syscall.EAGAIN
		})
		if err == nil && errno != 0 {
			err = os.NewSyscallError("sendmmsg", errno)
		}
		if err != nil {
			if s.debug {
				s.r.Logger.Debug("sending a reply to the client", "client", f.client, "err", err)
			}
			// The datagram that failed is lost; the others may go.
			k = 1
		} else if st := s.r.Stats; st != nil {
			var bytes int64
			for i := sent; i < sent+k; i++ {
				bytes += int64(m.hdrs[i].Len)
			}
			st.BytesOut.Add(bytes)
			st.Datagrams.Add(int64(k))
		}
		sent += k
	}
	return nil
}
