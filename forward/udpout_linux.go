package forward

import (
	"bytes"
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
//
// The goroutine that reads the programs' datagrams never waits for a host
// socket: a new flow is opened on a goroutine of its own (the pool may have
// to ask nsbind's parent for a socket), and until it is open its datagrams
// wait in a short queue, so that a slow flow does not hold up the others
// (a resolver's queries among them).
type UDPOutbound struct {
	// Pool supplies unconnected host sockets.
	Pool *SocketPool
	// Idle closes a flow after this long without a datagram either way.
	Idle time.Duration
	// MaxFlows bounds the open flows, those being opened included; a new
	// flow beyond it closes the flow idle longest.
	MaxFlows int
	// Logger gets per-flow events at debug level.
	Logger *slog.Logger
	// Stats, if not nil, counts flows and datagrams.
	Stats *Stats
	// Policy, if not nil, says where on the host a datagram that
	// ServeTProxy received for dst (its original destination inside)
	// goes, or refuses it with an error (the datagram is dropped). The
	// transparent socket takes datagrams sent to it directly too, so the
	// original destination is all there is to go by. Without Policy,
	// datagrams go to their original destination.
	Policy func(dst netip.AddrPort) (netip.AddrPort, error)
	// Budget, if not nil, bounds the flows of every relay sharing it
	// (budget.go).
	Budget *FlowBudget
}

// The defaults of UDPOutbound.
const (
	defaultUDPIdle  = 60 * time.Second
	defaultMaxFlows = 4096
)

// outFlowFDs is what an outbound flow takes from a FlowBudget.
const outFlowFDs = 2

// outQueueLen bounds the datagrams a flow keeps while its host socket is
// being opened; later ones are dropped, as a full socket buffer would.
const outQueueLen = 16

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
		if serr = setTransparent(int(fd), six, false); serr != nil {
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
			return
		}
		if origDst {
			level, recv := unix.SOL_IP, unix.IP_RECVORIGDSTADDR
			if six {
				level, recv = unix.SOL_IPV6, unix.IPV6_RECVORIGDSTADDR
			}
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
// ListenTProxyUDP, each to its original destination, until ctx is done;
// then it closes conn and every flow and returns once every flow goroutine
// has ended. Answers go back to the program from the destination's address,
// through a transparent socket bound to it.
func (u *UDPOutbound) ServeTProxy(ctx context.Context, conn *net.UDPConn) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s := u.server(ctx)
	defer s.shutdown()
	defer joinBudget(u.Budget, s.flows, (*outUDPFlow).close)()
	buf := make([]byte, maxDatagram)
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
		to := dst
		if u.Policy != nil {
			var err error
			if to, err = u.Policy(dst); err != nil {
				u.Logger.Debug("outbound datagram not allowed", "src", src, "dst", dst, "err", err)
				continue
			}
		}
		s.send(outFlow{src, dst}, to, buf[:n], func() (func([]byte) error, func(), error) {
			return outReplySocket(dst, src)
		})
	}
}

// ServeFixed relays the datagrams arriving at conn, a socket bound to a
// loopback address inside, to to on the host, and the answers back from
// conn, until ctx is done; then it closes conn and every flow and returns
// once every flow goroutine has ended.
func (u *UDPOutbound) ServeFixed(ctx context.Context, conn *net.UDPConn, to netip.AddrPort) error {
	a, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || a == nil {
		return errors.New("serving outbound UDP: the socket has no local address")
	}
	local := unmapPort(a.AddrPort())
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	s := u.server(ctx)
	defer s.shutdown()
	defer joinBudget(u.Budget, s.flows, (*outUDPFlow).close)()
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		src = unmapPort(src)
		s.send(outFlow{src, local}, to, buf[:n], func() (func([]byte) error, func(), error) {
			return func(b []byte) error {
				_, err := conn.WriteToUDPAddrPort(b, src)
				return err
			}, func() {}, nil
		})
	}
}

// udpOutServer is the state of one Serve call.
type udpOutServer struct {
	u     *UDPOutbound
	ctx   context.Context
	idle  time.Duration
	flows *flowTable[outFlow, *outUDPFlow]
	wg    sync.WaitGroup // flow goroutines
	// bufs holds buffers for the answers, taken only while one is read
	// and sent, so that waiting flows hold none.
	bufs sync.Pool
}

func (u *UDPOutbound) server(ctx context.Context) *udpOutServer {
	idle := cmp.Or(u.Idle, defaultUDPIdle)
	s := &udpOutServer{
		u:     u,
		ctx:   ctx,
		idle:  idle,
		flows: newFlowTable[outFlow, *outUDPFlow](idle, cmp.Or(u.MaxFlows, defaultMaxFlows)),
	}
	s.bufs.New = func() any {
		b := make([]byte, maxDatagram)
		return &b
	}
	return s
}

// shutdown closes every flow and waits for their goroutines.
func (s *udpOutServer) shutdown() {
	for _, e := range s.flows.removeAll() {
		e.value.close()
	}
	s.wg.Wait()
}

// outUDPFlow is one flow of a program to a destination.
type outUDPFlow struct {
	key    outFlow
	to     netip.AddrPort // where the host socket connects
	entry  *flowEntry[outFlow, *outUDPFlow]
	cancel context.CancelFunc // ends the opening
	budget *FlowBudget        // what close gives back to

	mu sync.Mutex // guards the fields below
	// host is the host socket connected to to, nil until the flow is
	// open; queue holds copies of the datagrams that came before.
	host       *net.UDPConn
	queue      [][]byte
	closeReply func()
	closed     bool
}

// send passes b on in flow k, opening the flow (a host socket connected to
// to, and the way back that open makes) on a goroutine of its own if it is
// new. It runs on the goroutine that reads the programs' datagrams and
// never waits for the pool or a connect.
func (s *udpOutServer) send(k outFlow, to netip.AddrPort, b []byte, open func() (func([]byte) error, func(), error)) {
	if e := s.flows.get(k); e != nil {
		e.value.send(s, b)
		return
	}
	// A host socket and, for TPROXY, a reply socket: given back by close.
	if !s.u.Budget.take(outFlowFDs) {
		s.u.Stats.failed()
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	f := &outUDPFlow{key: k, to: to, cancel: cancel, budget: s.u.Budget, queue: [][]byte{bytes.Clone(b)}}
	var removed *flowEntry[outFlow, *outUDPFlow]
	f.entry, removed = s.flows.add(k, f)
	if removed != nil {
		s.u.Logger.Debug("too many UDP flows, closing the one idle longest", "src", removed.key.src, "dst", removed.key.dst,
			"idle", s.flows.idle(removed))
		removed.value.close()
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.run(ctx, f, open)
	}()
}

// send sends b to the destination, or queues a copy while f opens.
func (f *outUDPFlow) send(s *udpOutServer, b []byte) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	host := f.host
	if host == nil {
		queued := len(f.queue) < outQueueLen
		if queued {
			f.queue = append(f.queue, bytes.Clone(b))
		}
		f.mu.Unlock()
		if !queued {
			s.u.Logger.Debug("UDP flow still opening, dropping a datagram", "src", f.key.src, "dst", f.key.dst)
		}
		return
	}
	f.mu.Unlock()
	if _, err := host.Write(b); err == nil {
		countDatagram(s.u.Stats, len(b), true)
	}
}

// close closes f's sockets and ends its opening; its goroutine then ends.
func (f *outUDPFlow) close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	host, closeReply := f.host, f.closeReply
	f.queue = nil
	f.mu.Unlock()
	f.budget.release(outFlowFDs)
	f.cancel()
	if host != nil {
		host.Close()
	}
	if closeReply != nil {
		closeReply()
	}
}

// run opens flow f, sends what was queued meanwhile, and moves the answers
// to the program until f is idle, evicted, or the relay shuts down.
func (s *udpOutServer) run(ctx context.Context, f *outUDPFlow, open func() (func([]byte) error, func(), error)) {
	host, reply, closeReply, err := s.open(ctx, f.to, open)
	if err != nil {
		s.flows.remove(f.entry)
		f.mu.Lock()
		closed := f.closed
		f.mu.Unlock()
		f.close()
		if !closed && ctx.Err() == nil { // not closed while it opened
			s.u.Stats.failed()
			s.u.Logger.Debug("cannot open a UDP flow", "src", f.key.src, "dst", f.to, "err", err)
		}
		return
	}
	// Send the queue in order; the flow is open to send once it is empty.
	for {
		f.mu.Lock()
		queue := f.queue
		f.queue = nil
		closed := f.closed
		if len(queue) == 0 && !closed {
			f.host, f.closeReply = host, closeReply
		}
		f.mu.Unlock()
		if closed {
			host.Close()
			closeReply()
			return
		}
		if len(queue) == 0 {
			break
		}
		for _, b := range queue {
			if _, err := host.Write(b); err == nil {
				countDatagram(s.u.Stats, len(b), true)
			}
		}
	}
	s.u.Stats.opened()
	s.u.Logger.Debug("UDP flow open", "src", f.key.src, "dst", f.key.dst, "host", f.to)
	s.back(f, host, reply)
	s.flows.remove(f.entry)
	f.close()
	s.u.Stats.closed(0, 0)
	s.u.Logger.Debug("UDP flow closed", "src", f.key.src, "dst", f.key.dst)
}

// open connects a host socket from the pool to to and makes the way back.
func (s *udpOutServer) open(ctx context.Context, to netip.AddrPort, open func() (func([]byte) error, func(), error)) (*net.UDPConn, func([]byte) error, func(), error) {
	sock, err := s.u.Pool.Get(ctx, KindFor(UDP, to.Addr()))
	if err != nil {
		return nil, nil, nil, err
	}
	host, err := connectHostUDP(sock, to)
	if err != nil {
		return nil, nil, nil, err
	}
	reply, closeReply, err := open()
	if err != nil {
		host.Close()
		return nil, nil, nil, err
	}
	return host, reply, closeReply, nil
}

// back moves the answers that arrive on host to the program until f is
// idle or closed.
func (s *udpOutServer) back(f *outUDPFlow, host *net.UDPConn, reply func([]byte) error) {
	rd, err := newPooledReader(host, &s.bufs)
	if err != nil {
		return
	}
	for {
		host.SetReadDeadline(time.Now().Add(s.idle - s.flows.idle(f.entry)))
		n, err := rd.read()
		if err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				if s.flows.expire(f.entry) {
					return
				}
			case errors.Is(err, net.ErrClosed):
				return
			}
			// ECONNREFUSED and the like (an ICMP error from the
			// destination): the flow goes on.
			continue
		}
		s.flows.touch(f.entry)
		err = reply((*rd.buf)[:n])
		rd.release()
		if err == nil {
			countDatagram(s.u.Stats, n, false)
		}
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
// (x/sys's ParseOrigDstAddr reads the address without checking its length;
// ParseSockaddr checks it.)
func outOrigDst(oob []byte) (netip.AddrPort, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
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
