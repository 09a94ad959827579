package forward

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// UDPOutbound carries the datagrams that programs inside send to the world
// out through host sockets: one flow per program address and destination,
// each with a host socket connected to the destination, closed after Idle
// without traffic.
type UDPOutbound struct {
	// Pool supplies unconnected host sockets.
	Pool *SocketPool
	// Idle closes a flow after this long without a datagram either way.
	Idle time.Duration
	// MaxFlows bounds the open flows; a datagram that would open one more
	// is dropped.
	MaxFlows int
	// Logger gets per-flow events at debug level.
	Logger *slog.Logger
	// Stats, if not nil, counts flows and datagrams.
	Stats *Stats

	mu    sync.Mutex
	flows map[outFlow]*outUDPFlow
}

type outUDPFlow struct {
	host  *net.UDPConn
	reply func([]byte) error
	close func()
	last  time.Time
}

// The defaults of UDPOutbound.
const (
	defaultUDPIdle  = 60 * time.Second
	defaultMaxFlows = 4096
)

// ListenTProxyUDP makes the transparent UDP socket that TPROXY hands
// outside-bound datagrams to, on addr inside. IP_TRANSPARENT (which needs
// CAP_NET_ADMIN in the namespace) lets it take datagrams for any address;
// IP_RECVORIGDSTADDR tells it each one's original destination.
func ListenTProxyUDP(addr netip.AddrPort) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		return outTransparent(c, addr.Addr().Is6(), true)
	}}
	pc, err := lc.ListenPacket(context.Background(), outNetwork("udp", addr.Addr()), addr.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// outTransparent sets IP_TRANSPARENT (and SO_REUSEADDR, so that several reply
// sockets share one remote address), and IP_RECVORIGDSTADDR when origDst.
func outTransparent(c syscall.RawConn, six, origDst bool) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		level, opt, recv := unix.SOL_IP, unix.IP_TRANSPARENT, unix.IP_RECVORIGDSTADDR
		if six {
			level, opt, recv = unix.SOL_IPV6, unix.IPV6_TRANSPARENT, unix.IPV6_RECVORIGDSTADDR
		}
		if serr = unix.SetsockoptInt(int(fd), level, opt, 1); serr != nil {
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		if origDst {
			serr = unix.SetsockoptInt(int(fd), level, recv, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

func outNetwork(proto string, a netip.Addr) string {
	if a.Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// ServeTProxy relays the datagrams arriving at conn, a socket from
// ListenTProxyUDP, each to its original destination, until ctx is done.
// Answers go back to the program from the destination's address, through a
// transparent socket bound to it.
func (u *UDPOutbound) ServeTProxy(ctx context.Context, conn *net.UDPConn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer u.closeAll()
	buf := make([]byte, 65536)
	oob := make([]byte, 128)
	for {
		n, oobn, _, src, err := conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		dst, ok := outOrigDst(oob[:oobn])
		if !ok {
			continue
		}
		src, dst = unmapPort(src), unmapPort(dst)
		u.send(ctx, outFlow{src, dst}, dst, buf[:n], func() (func([]byte) error, func(), error) {
			return outReplySocket(dst, src)
		})
	}
}

// ServeFixed relays the datagrams arriving at conn, a socket bound to a
// loopback address inside, to to on the host, and the answers back from
// conn, until ctx is done.
func (u *UDPOutbound) ServeFixed(ctx context.Context, conn *net.UDPConn, to netip.AddrPort) error {
	a, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || a == nil {
		return errors.New("serving outbound UDP: the socket has no local address")
	}
	local := unmapPort(a.AddrPort())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer u.closeAll()
	buf := make([]byte, 65536)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		src = unmapPort(src)
		u.send(ctx, outFlow{src, local}, to, buf[:n], func() (func([]byte) error, func(), error) {
			return func(b []byte) error {
				_, err := conn.WriteToUDPAddrPort(b, src)
				return err
			}, func() {}, nil
		})
	}
}

// send passes b on in flow k, opening the flow (a host socket connected to
// to, and the way back that open makes) if it is new.
func (u *UDPOutbound) send(ctx context.Context, k outFlow, to netip.AddrPort, b []byte, open func() (func([]byte) error, func(), error)) {
	u.mu.Lock()
	if u.flows == nil {
		u.flows = make(map[outFlow]*outUDPFlow)
	}
	f, ok := u.flows[k]
	if ok {
		f.last = time.Now()
	}
	full := len(u.flows) >= cmp.Or(u.MaxFlows, defaultMaxFlows)
	u.mu.Unlock()
	if !ok {
		if full {
			u.Logger.Debug("too many UDP flows, dropping a datagram", "src", k.src, "dst", k.dst)
			return
		}
		var err error
		f, err = u.open(ctx, k, to, open)
		if err != nil {
			u.Stats.failed()
			u.Logger.Debug("cannot open a UDP flow", "src", k.src, "dst", to, "err", err)
			return
		}
	}
	if _, err := f.host.Write(b); err == nil {
		countDatagram(u.Stats, len(b), true)
	}
}

func (u *UDPOutbound) open(ctx context.Context, k outFlow, to netip.AddrPort, open func() (func([]byte) error, func(), error)) (*outUDPFlow, error) {
	s, err := u.Pool.Get(ctx, KindFor(UDP, to.Addr()))
	if err != nil {
		return nil, err
	}
	host, err := connectHostUDP(s, to)
	if err != nil {
		return nil, err
	}
	reply, closeReply, err := open()
	if err != nil {
		host.Close()
		return nil, err
	}
	f := &outUDPFlow{host: host, reply: reply, close: closeReply, last: time.Now()}
	u.mu.Lock()
	u.flows[k] = f
	u.mu.Unlock()
	u.Stats.opened()
	u.Logger.Debug("UDP flow open", "src", k.src, "dst", k.dst, "host", to)
	go u.back(k, f)
	return f, nil
}

// back moves the answers of flow f to the program until f is idle.
func (u *UDPOutbound) back(k outFlow, f *outUDPFlow) {
	idle := cmp.Or(u.Idle, defaultUDPIdle)
	buf := make([]byte, 65536)
	for {
		f.host.SetReadDeadline(time.Now().Add(idle))
		n, err := f.host.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				u.mu.Lock()
				recent := time.Since(f.last) < idle
				u.mu.Unlock()
				if recent {
					continue
				}
			} else if !errors.Is(err, net.ErrClosed) {
				// ECONNREFUSED and the like (an ICMP error from the
				// destination): the flow goes on.
				continue
			}
			break
		}
		u.mu.Lock()
		f.last = time.Now()
		u.mu.Unlock()
		if f.reply(buf[:n]) == nil {
			countDatagram(u.Stats, n, false)
		}
	}
	u.mu.Lock()
	if u.flows[k] == f {
		delete(u.flows, k)
	}
	u.mu.Unlock()
	f.host.Close()
	f.close()
	u.Stats.closed(0, 0)
	u.Logger.Debug("UDP flow closed", "src", k.src, "dst", k.dst)
}

func (u *UDPOutbound) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, f := range u.flows {
		f.host.Close()
	}
}

// outReplySocket makes the way back for a flow from src to dst: a transparent
// socket bound to dst (an address that is not the namespace's own), which
// sends to src as if dst answered.
func outReplySocket(dst, src netip.AddrPort) (func([]byte) error, func(), error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		return outTransparent(c, dst.Addr().Is6(), false)
	}}
	pc, err := lc.ListenPacket(context.Background(), outNetwork("udp", dst.Addr()), dst.String())
	if err != nil {
		return nil, nil, err
	}
	c := pc.(*net.UDPConn)
	return func(b []byte) error {
		_, err := c.WriteToUDPAddrPort(b, src)
		return err
	}, func() { c.Close() }, nil
}

// outOrigDst reads IP_ORIGDSTADDR or IPV6_ORIGDSTADDR from control messages.
func outOrigDst(oob []byte) (netip.AddrPort, bool) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return netip.AddrPort{}, false
	}
	for _, m := range msgs {
		if (m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_ORIGDSTADDR) ||
			(m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_ORIGDSTADDR) {
			return ParseSockaddr(m.Data)
		}
	}
	return netip.AddrPort{}, false
}

// countDatagram counts one datagram of n bytes, in (from a program inside)
// or out.
func countDatagram(s *Stats, n int, in bool) {
	if s == nil {
		return
	}
	s.Datagrams.Add(1)
	if in {
		s.BytesIn.Add(int64(n))
	} else {
		s.BytesOut.Add(int64(n))
	}
}
