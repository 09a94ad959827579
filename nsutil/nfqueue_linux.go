package nsutil

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	ip6 "golang.org/x/net/ipv6" // ipv6 names a function of this package
	"golang.org/x/sys/unix"
)

// nfnetlink_queue, from linux/netfilter/nfnetlink_queue.h (x/sys/unix does
// not carry these).
const (
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaMark       = 3
	nfqaPayload    = 10

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxlen = 3

	nfqnlCfgCmdBind = 1
	nfqnlCopyPacket = 2

	nfDrop   = 0
	nfAccept = 1
)

// Verdict is what happens to a queued SYN.
type Verdict int

// Verdicts, and the error the program's connect() then gets.
const (
	VerdictAccept      Verdict = iota // redirected to the helper's listener: success
	VerdictRefuse                     // a TCP reset: ECONNREFUSED
	VerdictHostUnreach                // ICMP host unreachable: EHOSTUNREACH
	VerdictNetUnreach                 // ICMP network unreachable: ENETUNREACH
	VerdictProhibited                 // ICMP prohibited: EACCES (IPv6), EHOSTUNREACH (IPv4)
	VerdictDrop                       // dropped: the program's SYN retries time out (ETIMEDOUT)
)

// QueuedSYN is a connection attempt held in the queue.
type QueuedSYN struct {
	// ID is the packet's id in the queue, for Verdict.
	ID uint32
	// Src is the program's address, Dst where it connects to.
	Src, Dst netip.AddrPort
	// head is the packet's IP header and first 8 bytes of TCP header, which
	// an ICMP error quotes.
	head []byte
}

// Queue is a bound NFQUEUE: it receives the SYNs the rules of SetupOutbound
// queue and gives them their verdicts. Next is called from one goroutine;
// Verdict from any; Close from any, and it ends a pending Next.
type Queue struct {
	f      *os.File
	num    uint16
	seq    atomic.Uint32
	closed atomic.Bool
}

// maxQueued bounds the SYNs the kernel holds for the helper; past that it
// drops new ones (the program's SYN is retried).
const maxQueued = 4096

// OpenQueue binds queue num of the caller's network namespace. It needs
// CAP_NET_ADMIN there.
func OpenQueue(num uint16) (*Queue, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening nfnetlink: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding nfnetlink: %w", err)
	}
	// A burst of SYNs must not overflow the socket: the kernel would drop
	// the packets it cannot deliver, and report ENOBUFS on the next read.
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1)
	q := &Queue{f: os.NewFile(uintptr(fd), "nfqueue"), num: num}

	msgs, err := configAttrs()
	if err != nil {
		q.Close()
		return nil, fmt.Errorf("binding NFQUEUE %d: %w", num, err)
	}
	for _, attrs := range msgs {
		if err := q.request(nfqnlMsgConfig, attrs); err != nil {
			q.Close()
			return nil, fmt.Errorf("binding NFQUEUE %d: %w", num, err)
		}
	}
	return q, nil
}

// configAttrs are the attributes of the two configuration messages that
// bind a queue: the bind command, then the copy mode (whole packets) and
// the queue's length.
func configAttrs() ([][]byte, error) {
	bind := nfAttributes()
	// struct nfqnl_msg_config_cmd: command, padding, protocol family
	// (unused since Linux 3.8).
	bind.Bytes(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0})
	params := nfAttributes()
	// struct nfqnl_msg_config_params (packed): copy range, copy mode.
	params.Bytes(nfqaCfgParams, append(binary.BigEndian.AppendUint32(nil, 0xffff), nfqnlCopyPacket))
	params.Uint32(nfqaCfgQueueMaxlen, maxQueued)
	var out [][]byte
	for _, ae := range []*netlink.AttributeEncoder{bind, params} {
		b, err := ae.Encode()
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// nfAttributes is an encoder of nfnetlink attributes, whose values are
// big-endian (the attribute headers stay in host order).
func nfAttributes() *netlink.AttributeEncoder {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	return ae
}

// request sends a message that the kernel acknowledges and waits for the
// acknowledgement. It is used before Next runs.
func (q *Queue) request(typ uint16, attrs []byte) error {
	seq := q.seq.Add(1)
	if err := q.send(typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, attrs); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, err := q.recv(buf)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq != seq || len(m.Data) < 4 {
				continue
			}
			if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return unix.Errno(errno)
			}
			return nil
		}
	}
}

func (q *Queue) send(typ uint16, flags uint16, seq uint32, attrs []byte) error {
	const hdr = unix.SizeofNlMsghdr + 4 // nlmsghdr + nfgenmsg
	b := make([]byte, hdr, hdr+len(attrs))
	binary.NativeEndian.PutUint32(b[0:], uint32(hdr+len(attrs)))
	binary.NativeEndian.PutUint16(b[4:], unix.NFNL_SUBSYS_QUEUE<<8|typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	// nfgenmsg: family AF_UNSPEC, version 0, the queue number (big endian).
	b[16], b[17] = unix.AF_UNSPEC, unix.NFNETLINK_V0
	binary.BigEndian.PutUint16(b[18:], q.num)
	b = append(b, attrs...)
	rc, err := q.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return serr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return serr
}

func (q *Queue) recv(buf []byte) (int, error) {
	rc, err := q.f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		n    int
		rerr error
	)
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// ErrQueueClosed is returned by Next after Close.
var ErrQueueClosed = errors.New("queue closed")

// Next waits for the next queued SYN. Packets it cannot read (not TCP) are
// accepted unchanged.
func (q *Queue) Next(buf *[]byte) ([]QueuedSYN, error) {
	if *buf == nil {
		*buf = make([]byte, 1<<16)
	}
	for {
		n, err := q.recv(*buf)
		if err != nil {
			if q.closed.Load() {
				return nil, ErrQueueClosed
			}
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, fmt.Errorf("reading NFQUEUE %d: %w", q.num, err)
		}
		msgs, err := syscall.ParseNetlinkMessage((*buf)[:n])
		if err != nil {
			continue
		}
		var out []QueuedSYN
		for _, m := range msgs {
			if m.Header.Type != unix.NFNL_SUBSYS_QUEUE<<8|nfqnlMsgPacket || len(m.Data) < 4 {
				continue
			}
			id, haveID, payload := packetAttrs(m.Data[4:])
			if !haveID {
				continue
			}
			src, dst, head, ok := parseTCPTuple(payload)
			if !ok {
				q.verdict(id, nfAccept, 0)
				continue
			}
			out = append(out, QueuedSYN{ID: id, Src: src, Dst: dst, head: head})
		}
		if len(out) > 0 {
			return out, nil
		}
	}
}

// Verdict releases the queued SYN s with v.
func (q *Queue) Verdict(s QueuedSYN, v Verdict) error {
	switch v {
	case VerdictAccept:
		return q.verdict(s.ID, nfAccept, MarkAccept)
	case VerdictRefuse:
		return q.verdict(s.ID, nfAccept, MarkRefuse)
	case VerdictHostUnreach, VerdictNetUnreach, VerdictProhibited:
		err := sendUnreach(s, v)
		if err2 := q.verdict(s.ID, nfDrop, 0); err == nil {
			err = err2
		}
		return err
	}
	return q.verdict(s.ID, nfDrop, 0)
}

// sendUnreach answers the SYN s with an ICMP destination unreachable, as a
// router on the way would, so that the program's connect() fails with the
// matching errno. The kernel's own `reject with icmp` does not do it here:
// for IPv4 it sends nothing at all about a packet leaving through lo. This
// needs CAP_NET_RAW in the namespace.
func sendUnreach(s QueuedSYN, v Verdict) error {
	var (
		family, proto int
		to            unix.Sockaddr
	)
	if s.Src.Addr().Is4() {
		family, proto = unix.AF_INET, unix.IPPROTO_ICMP
		to = &unix.SockaddrInet4{Addr: s.Src.Addr().As4()}
	} else {
		family, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		to = &unix.SockaddrInet6{Addr: s.Src.Addr().As16()}
	}
	msg, err := unreachMessage(s, v)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("opening a raw ICMP socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, msg, 0, to); err != nil {
		return fmt.Errorf("sending ICMP unreachable to %s: %w", s.Src.Addr(), err)
	}
	return nil
}

// unreachMessage is the ICMP (or ICMPv6) destination unreachable that
// answers s with v, quoting the start of s. An ICMPv6 message is left
// without its checksum: the kernel computes it (it covers a pseudo header
// only the kernel knows for sure).
func unreachMessage(s QueuedSYN, v Verdict) ([]byte, error) {
	m := icmp.Message{Body: &icmp.DstUnreach{Data: s.head}}
	if s.Src.Addr().Is4() {
		m.Type = ipv4.ICMPTypeDestinationUnreachable
		m.Code = map[Verdict]int{VerdictHostUnreach: 1, VerdictNetUnreach: 0, VerdictProhibited: 13}[v]
	} else {
		m.Type = ip6.ICMPTypeDestinationUnreachable
		m.Code = map[Verdict]int{VerdictHostUnreach: 3, VerdictNetUnreach: 0, VerdictProhibited: 1}[v]
	}
	msg, err := m.Marshal(nil)
	if err != nil {
		return nil, fmt.Errorf("building the ICMP unreachable: %w", err)
	}
	return msg, nil
}

func (q *Queue) verdict(id, v, mark uint32) error {
	attrs, err := verdictAttrs(id, v, mark)
	if err != nil {
		return err
	}
	return q.send(nfqnlMsgVerdict, unix.NLM_F_REQUEST, 0, attrs)
}

// verdictAttrs are the attributes of a verdict v on packet id, with the
// mark to set on it unless mark is 0.
func verdictAttrs(id, v, mark uint32) ([]byte, error) {
	ae := nfAttributes()
	// struct nfqnl_msg_verdict_hdr: verdict, packet id.
	ae.Bytes(nfqaVerdictHdr, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, v), id))
	if mark != 0 {
		ae.Uint32(nfqaMark, mark)
	}
	return ae.Encode()
}

// packetAttrs reads a queued packet's id and payload from the attributes
// of its message. Attributes from one that is cut short on are left out.
func packetAttrs(b []byte) (id uint32, haveID bool, payload []byte) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false, nil
	}
	for ad.Next() {
		switch ad.Type() {
		case nfqaPacketHdr:
			// struct nfqnl_msg_packet_hdr: packet id, hardware
			// protocol, hook.
			if val := ad.Bytes(); len(val) >= 4 {
				id, haveID = binary.BigEndian.Uint32(val), true
			}
		case nfqaPayload:
			payload = ad.Bytes()
		}
	}
	return id, haveID, payload
}

// Close unbinds the queue. Packets still queued are dropped by the kernel.
func (q *Queue) Close() error {
	q.closed.Store(true)
	return q.f.Close()
}

// parseTCPTuple reads the addresses and ports of an IPv4 or IPv6 TCP packet.
func parseTCPTuple(p []byte) (src, dst netip.AddrPort, head []byte, ok bool) {
	if len(p) < 1 {
		return
	}
	var (
		s, d netip.Addr
		l4   []byte
	)
	switch p[0] >> 4 {
	case 4:
		h, err := ipv4.ParseHeader(p)
		if err != nil || h.Len < ipv4.HeaderLen || h.Protocol != unix.IPPROTO_TCP {
			return
		}
		s, _ = netip.AddrFromSlice(h.Src.To4())
		d, _ = netip.AddrFromSlice(h.Dst.To4())
		l4 = p[h.Len:]
	case 6:
		// The SYNs nsbind queues carry no extension headers.
		h, err := ip6.ParseHeader(p)
		if err != nil || h.NextHeader != unix.IPPROTO_TCP {
			return
		}
		s, _ = netip.AddrFromSlice(h.Src)
		d, _ = netip.AddrFromSlice(h.Dst)
		l4 = p[ip6.HeaderLen:]
	default:
		return
	}
	if len(l4) < 8 {
		return
	}
	head = bytes.Clone(p[:len(p)-len(l4)+8])
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(l4[0:])),
		netip.AddrPortFrom(d, binary.BigEndian.Uint16(l4[2:])), head, true
}
