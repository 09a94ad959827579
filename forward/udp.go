package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults of UDPRelay.
const (
	// DefaultUDPTimeout is how long a UDP flow lives with no datagram
	// either way.
	DefaultUDPTimeout = 60 * time.Second
	// DefaultUDPMaxFlows bounds the flows of one host socket. Each flow
	// holds a socket (a descriptor) and a goroutine.
	DefaultUDPMaxFlows = 4096
)

const (
	// maxDatagram fits every UDP payload: 65507 bytes over IPv4,
	// 65527 over IPv6 (65535 less the 8-byte UDP header).
	maxDatagram = 1 << 16
	// hostReadBuffer is the receive buffer asked for on the host socket,
	// which takes the datagrams of every client: the kernel's default
	// (net.core.rmem_default, about 208 KiB) holds only a dozen large
	// datagrams. The kernel caps it at net.core.rmem_max.
	hostReadBuffer = 4 << 20
	// maxPendingBytes bounds the copies of first datagrams kept for a
	// resend to the other address family, over all flows of a relay.
	maxPendingBytes = 4 << 20
)

// PacketDialer opens the inside socket of a UDP flow.
type PacketDialer interface {
	// DialUDP returns a UDP socket connected to server, for the flow of
	// the client at client. Every flow gets a socket of its own, so the
	// server's replies arrive on it and go back to the right client.
	DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error)
}

// DialUDP implements PacketDialer: a plain socket of the caller's network
// namespace, connected to server, with a port the kernel chooses.
func (LoopbackDialer) DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error) {
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
}

// UDPRelay relays the datagrams that arrive on a host UDP socket to the
// server's port inside, and the server's replies back.
//
// Each client address and port is a flow with its own socket inside,
// connected to the server on the loopback of the client's address family.
// When the server does not listen on that family (the kernel refuses the
// datagram with an ICMP port unreachable, which the connected socket reports
// as ECONNREFUSED) the flow moves to the other family and sends the datagram
// again there. A flow ends after Timeout with no datagram either way; when
// MaxFlows are open, a new client evicts the flow idle longest.
type UDPRelay struct {
	// Port is the server's port inside.
	Port uint16
	// Dialer opens the inside socket of each flow.
	Dialer PacketDialer
	// Timeout ends a flow idle that long; 0 means DefaultUDPTimeout.
	Timeout time.Duration
	// MaxFlows bounds the flows open at once; 0 means DefaultUDPMaxFlows.
	MaxFlows int
	// Logger gets per-flow events at debug level.
	Logger *slog.Logger
	// Stats, if not nil, counts flows (as Conns and Active), bytes and
	// datagrams.
	Stats *Stats
	// Budget, if not nil, bounds the flows of every relay sharing it
	// (budget.go).
	Budget *FlowBudget
}

// Serve relays datagrams from host until ctx is done, then closes host and
// every flow and returns once every flow goroutine has ended.
func (r *UDPRelay) Serve(ctx context.Context, host *net.UDPConn) error {
	timeout, maxFlows := r.Timeout, r.MaxFlows
	if timeout <= 0 {
		timeout = DefaultUDPTimeout
	}
	if maxFlows <= 0 {
		maxFlows = DefaultUDPMaxFlows
	}
	s := &udpServer{
		r:       r,
		ctx:     ctx,
		host:    host,
		timeout: timeout,
		max:     maxFlows,
		flows:   newFlowTable[netip.AddrPort, *udpFlow](timeout, maxFlows),
		debug:   r.Logger.Enabled(ctx, slog.LevelDebug),
	}
	s.bufs.New = newReplyBuffers
	var err error
	if s.hostRC, s.host6, err = hostFamily(host); err != nil {
		return err
	}
	defer s.shutdown()
	defer joinBudget(r.Budget, s.flows, (*udpFlow).close)()
	stop := context.AfterFunc(ctx, func() { host.Close() })
	defer stop()
	// Best effort: a bigger buffer only loses fewer datagrams in a burst.
	host.SetReadBuffer(hostReadBuffer)
	return s.readHost()
}

// udpServer is the state of one Serve call.
type udpServer struct {
	r       *UDPRelay
	ctx     context.Context
	host    *net.UDPConn
	hostRC  syscall.RawConn // host's, for the flows' replies
	host6   bool            // host is an IPv6 socket
	timeout time.Duration
	max     int
	flows   *flowTable[netip.AddrPort, *udpFlow]
	debug   bool
	wg      sync.WaitGroup // flow goroutines
	pending atomic.Int64   // bytes held in flows' pending copies
	// bufs holds buffers for the server's replies, taken only while a
	// reply is read and sent, so that waiting flows hold none.
	bufs sync.Pool
	// seg sends runs of datagrams to the server (used by the goroutine
	// that reads the host socket); noSegments is set once the kernel
	// refused to.
	seg        *segmenter
	noSegments atomic.Bool
}

// fromHost hands datagrams of client, in the order they came, to its flow,
// opening the flow if needed. It runs on the goroutine that reads the host
// socket.
func (s *udpServer) fromHost(client netip.AddrPort, dgrams [][]byte) {
	f := s.flowFor(client)
	if f == nil {
		return
	}
	for len(dgrams) > 0 {
		k := 1
		if len(dgrams) > 1 && f.confirmed.Load() {
			// The server is known to be there: no copy is kept for a
			// resend, so a run can go in one send.
			k = s.seg.run(dgrams)
		}
		if k > 1 && f.sendSegments(dgrams[:k]) {
			for _, b := range dgrams[:k] {
				s.count(b)
			}
		} else {
			for _, b := range dgrams[:k] {
				if f.send(b) {
					s.count(b)
				}
			}
		}
		dgrams = dgrams[k:]
	}
}

// count counts a datagram sent to the server.
func (s *udpServer) count(b []byte) {
	if st := s.r.Stats; st != nil {
		st.BytesIn.Add(int64(len(b)))
		st.Datagrams.Add(1)
	}
}

// flowFor returns the flow of client, opening it (and evicting the flow
// idle longest when the relay is full) if there is none.
func (s *udpServer) flowFor(client netip.AddrPort) *udpFlow {
	if e := s.flows.get(client); e != nil {
		return e.value
	}
	if s.flows.full() {
		// Before the dial, so that it has the evicted flow's descriptor.
		s.evict("too many UDP flows, closing the one idle longest")
	}

	if !s.r.Budget.take(1) { // given back by f.close
		s.r.Stats.failed()
		return nil
	}
	f := &udpFlow{s: s, client: client, out: newClientSender(s, client)}
	err := f.dial()
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		// Out of descriptors before the bound (a low limit, or many
		// published ports): make room the same way.
		if s.evict("out of descriptors, closing the UDP flow idle longest") {
			err = f.dial()
		}
	}
	if err != nil {
		s.r.Budget.release(1)
		if s.debug {
			s.r.Logger.Debug("cannot open a UDP flow to the server", "client", client, "port", s.r.Port, "err", err)
		}
		s.r.Stats.failed()
		return nil
	}
	var removed *flowEntry[netip.AddrPort, *udpFlow]
	f.entry, removed = s.flows.add(client, f)
	if removed != nil {
		removed.value.close()
	}
	s.r.Stats.opened()
	if s.debug {
		s.r.Logger.Debug("UDP flow open", "client", client, "port", s.r.Port, "server", f.server)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f.run()
	}()
	return f
}

// evict closes the flow idle longest, if there is one, and reports whether
// there was.
func (s *udpServer) evict(why string) bool {
	e := s.flows.evictOldest()
	if e == nil {
		return false
	}
	if s.debug {
		s.r.Logger.Debug(why, "port", s.r.Port, "max", s.max, "client", e.key, "idle", s.flows.idle(e))
	}
	e.value.close()
	return true
}

// shutdown closes every flow and waits for their goroutines.
func (s *udpServer) shutdown() {
	for _, e := range s.flows.removeAll() {
		e.value.close()
	}
	s.wg.Wait()
}

// serverAddr is the server's address for a client of the given family,
// or of the other family.
func (s *udpServer) serverAddr(client netip.AddrPort, other bool) netip.AddrPort {
	v6 := client.Addr().Unmap().Is6() != other
	if v6 {
		return netip.AddrPortFrom(loopback6, s.r.Port)
	}
	return netip.AddrPortFrom(loopback4, s.r.Port)
}

// udpFlow is one client's flow: the socket inside that carries its
// datagrams to the server and the server's replies back.
type udpFlow struct {
	s      *udpServer
	client netip.AddrPort
	entry  *flowEntry[netip.AddrPort, *udpFlow] // in s.flows; set before run
	out    *clientSender                        // replies to client; used by run

	// confirmed is true once the server's family is known to be right:
	// the server replied, or a later datagram went out with no refusal.
	confirmed atomic.Bool

	mu     sync.Mutex // guards the fields below
	conn   *net.UDPConn
	rc     syscall.RawConn // conn's
	server netip.AddrPort  // where conn is connected
	other  bool            // server is of the other family than client
	// pending is a copy of the latest datagram sent while not confirmed,
	// to send again to the other family if the server refuses it; sent
	// counts the datagrams sent on conn while not confirmed; retried is
	// true once pending went to the other family.
	pending []byte
	sent    int
	retried bool
	closed  bool
}

// dial opens f's first socket: the client's family, or the other if the
// namespace lacks that one (no ::1 where IPv6 is off).
func (f *udpFlow) dial() error {
	var err error
	for _, other := range []bool{false, true} {
		server := f.s.serverAddr(f.client, other)
		var c *net.UDPConn
		c, err = f.s.r.Dialer.DialUDP(f.s.ctx, f.client, server)
		if err == nil {
			if f.rc, err = c.SyscallConn(); err != nil {
				c.Close()
				return err
			}
			f.conn, f.server, f.other = c, server, other
			return nil
		}
		if !unavailable(err) && !errors.Is(err, syscall.ENETUNREACH) {
			break
		}
	}
	return err
}

// current returns the socket f uses now and its RawConn, or nil once f is
// closed.
func (f *udpFlow) current() (*net.UDPConn, syscall.RawConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, nil
	}
	return f.conn, f.rc
}

// close closes f's socket; its goroutine then ends.
func (f *udpFlow) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	f.conn.Close()
	f.s.r.Budget.release(1)
	f.dropPendingLocked()
	f.s.r.Stats.closed(0, 0) // the bytes were counted as they passed
}

func (f *udpFlow) dropPendingLocked() {
	if f.pending != nil {
		f.s.pending.Add(-int64(cap(f.pending)))
		f.pending = nil
	}
}

// send sends one datagram of the client to the server and reports whether
// it went. It runs on the goroutine that reads the host socket.
func (f *udpFlow) send(b []byte) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	conn, rc := f.conn, f.rc
	keep := !f.confirmed.Load()
	if keep {
		f.keepLocked(b)
	}
	f.mu.Unlock()
	seg := f.s.seg
	_, err := seg.write(conn, rc, b)
	switch {
	case errors.Is(err, net.ErrClosed):
		// The flow moved to the other family meanwhile: send there.
		if c, crc := f.current(); c != nil && c != conn {
			conn, rc = c, crc
			_, err = seg.write(conn, rc, b)
		}
	case errors.Is(err, syscall.ECONNREFUSED):
		// The refusal of an earlier datagram, reported here instead of on
		// the flow's goroutine (and so cleared): this one did not go. Try
		// it here once; the server may have started meanwhile. If it is
		// not there, its refusal moves the flow with this datagram.
		_, err = seg.write(conn, rc, b)
	}
	switch {
	case err == nil:
		if keep {
			f.sentUnconfirmed(conn)
		}
		return true
	case errors.Is(err, syscall.ECONNREFUSED):
		return f.refused(conn)
	default:
		if f.s.debug {
			f.s.r.Logger.Debug("sending a datagram to the server", "client", f.client, "port", f.s.r.Port, "err", err)
		}
		return false
	}
}

// sendSegments sends a run of datagrams of the same size (see
// segmenter.run) with one system call, and reports whether they went. Only
// a flow whose server is confirmed sends so: no copy is kept. When it
// fails, nothing went: the caller sends them one by one, which handles
// refusals and moves.
func (f *udpFlow) sendSegments(dgrams [][]byte) bool {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return false
	}
	rc := f.rc
	f.mu.Unlock()
	return f.s.seg.send(rc, dgrams) == nil
}

// sentUnconfirmed counts a datagram sent on conn before the family was
// confirmed. The second one sent with no refusal confirms it: on loopback
// the kernel handles the ICMP refusal of a datagram before send returns, so
// a refusal of the first would have failed the second.
func (f *udpFlow) sentUnconfirmed(conn *net.UDPConn) {
	f.mu.Lock()
	if conn == f.conn && !f.closed {
		f.sent++
		if f.sent >= 2 {
			f.confirmed.Store(true)
			f.dropPendingLocked()
		}
	}
	f.mu.Unlock()
}

// keepLocked keeps a copy of b as the datagram to resend on a refusal,
// within the relay's budget for such copies.
func (f *udpFlow) keepLocked(b []byte) {
	f.retried = false
	if len(b) <= cap(f.pending) {
		f.pending = append(f.pending[:0], b...)
		return
	}
	f.dropPendingLocked()
	if f.s.pending.Add(int64(len(b))) > maxPendingBytes {
		f.s.pending.Add(-int64(len(b)))
		return
	}
	f.pending = append(make([]byte, 0, len(b)), b...)
}

// refused handles a refusal (ECONNREFUSED) on conn: the server does not
// listen on that family. The flow moves to the other family and sends the
// pending datagram again there, once per datagram; refused reports whether
// it did.
func (f *udpFlow) refused(conn *net.UDPConn) bool {
	f.mu.Lock()
	if f.closed || conn != f.conn {
		f.mu.Unlock()
		return false
	}
	f.confirmed.Store(false)
	if f.pending == nil || f.retried {
		// Nothing to send again: the server is not there (yet) on either
		// family, or went away. The next datagram tries again.
		f.sent = 0
		f.dropPendingLocked()
		f.mu.Unlock()
		return false
	}
	f.retried = true
	resend := append([]byte(nil), f.pending...)
	other := !f.other
	f.mu.Unlock()

	server := f.s.serverAddr(f.client, other)
	nc, err := f.s.r.Dialer.DialUDP(f.s.ctx, f.client, server)
	var nrc syscall.RawConn
	if err == nil {
		if nrc, err = nc.SyscallConn(); err != nil {
			nc.Close()
		}
	}
	if err != nil {
		if f.s.debug {
			f.s.r.Logger.Debug("cannot open a UDP flow to the other address family", "client", f.client, "server", server, "err", err)
		}
		return false
	}
	f.mu.Lock()
	if f.closed || conn != f.conn {
		f.mu.Unlock()
		nc.Close()
		return false
	}
	f.conn, f.rc, f.server, f.other, f.sent = nc, nrc, server, other, 1
	f.mu.Unlock()
	// The flow's goroutine, reading the old socket, sees it closed and
	// moves to the new one.
	conn.Close()
	if f.s.debug {
		f.s.r.Logger.Debug("server refused the datagram, trying the other address family", "client", f.client, "server", server)
	}
	_, err = nc.Write(resend)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return f.refused(nc)
	}
	return err == nil
}

// confirm marks the flow's family right: the server answered on conn.
func (f *udpFlow) confirm(conn *net.UDPConn) {
	f.mu.Lock()
	if conn == f.conn {
		f.confirmed.Store(true)
		f.dropPendingLocked()
	}
	f.mu.Unlock()
}

// run relays the server's replies to the client until the flow ends: it
// is idle for the timeout, evicted, or the relay shuts down.
func (f *udpFlow) run() {
	s := f.s
	conn, _ := f.current()
	if conn == nil {
		return
	}
	rd, err := newReplyReader(f, conn)
	if err != nil {
		f.end()
		return
	}
	conn.SetReadDeadline(time.Now().Add(s.timeout))
	for {
		err := rd.serve()
		if err == nil {
			continue
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if s.flows.expire(f.entry) {
				f.close()
				if s.debug {
					s.r.Logger.Debug("UDP flow idle, closed", "client", f.client, "port", s.r.Port)
				}
				return
			}
			conn.SetReadDeadline(time.Now().Add(s.timeout - s.flows.idle(f.entry)))
		case errors.Is(err, net.ErrClosed):
			// Closed by the end of the flow, or by a move to the other
			// family: then go on with the new socket.
			next, _ := f.current()
			if next == nil || next == conn {
				f.end()
				return
			}
			conn = next
			if rd, err = newReplyReader(f, conn); err != nil {
				f.end()
				return
			}
			conn.SetReadDeadline(time.Now().Add(s.timeout - s.flows.idle(f.entry)))
		case errors.Is(err, syscall.ECONNREFUSED):
			f.refused(conn)
		case transientICMP(err):
			// An ICMP error about an earlier datagram; the flow goes on.
		default:
			if s.debug {
				s.r.Logger.Debug("UDP flow failed", "client", f.client, "port", s.r.Port, "err", err)
			}
			f.end()
			return
		}
	}
}

// end takes f out of the flow table and closes it.
func (f *udpFlow) end() {
	f.s.flows.remove(f.entry)
	f.close()
}

// replyFailed notes a reply that could not be sent to the client; the flow
// goes on.
func (f *udpFlow) replyFailed(err error) {
	if f.s.debug {
		f.s.r.Logger.Debug("sending a reply to the client", "client", f.client, "err", err)
	}
}

// countOut counts n replies of bytes in all sent to clients.
func (s *udpServer) countOut(bytes, n int) {
	if st := s.r.Stats; st != nil && n > 0 {
		st.BytesOut.Add(int64(bytes))
		st.Datagrams.Add(int64(n))
	}
}

// transientICMP reports an error a connected UDP socket returns for an ICMP
// error about an earlier datagram, after which it still works.
func transientICMP(err error) bool {
	return errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.EPROTO)
}

// pooledReader reads datagrams from a socket into buffers of a pool,
// taking one only once the socket is readable.
type pooledReader struct {
	rc   syscall.RawConn
	pool *sync.Pool
	buf  *[]byte // the buffer of the latest read, until release
	n    int
	err  error
	fn   func(fd uintptr) bool // made once: a closure per read would allocate
}

func newPooledReader(c *net.UDPConn, pool *sync.Pool) (*pooledReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	rd := &pooledReader{rc: rc, pool: pool}
	rd.fn = func(fd uintptr) bool {
		rd.buf = rd.pool.Get().(*[]byte)
		rd.n, rd.err = readNonBlocking(fd, *rd.buf)
		if rd.err == syscall.EAGAIN {
			rd.release()
			return false
		}
		return true
	}
	return rd, nil
}

// read reads one datagram into rd.buf and returns its length; the caller
// releases the buffer.
func (rd *pooledReader) read() (int, error) {
	err := rd.rc.Read(rd.fn)
	if err == nil && rd.err != nil {
		err = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("read", rd.err)}
	}
	if err != nil {
		rd.release()
		return 0, err
	}
	return rd.n, nil
}

// release gives the buffer of the latest read back to the pool.
func (rd *pooledReader) release() {
	if rd.buf != nil {
		rd.pool.Put(rd.buf)
		rd.buf = nil
	}
}

// readHost reads the host socket until it is closed, handing each datagram
// to its flow. It reads a batch of datagrams at a time, and hands the
// datagrams of one client that follow each other in a batch to its flow
// together, which sends a run of the same size with one system call.
func (s *udpServer) readHost() error {
	br, err := newBatchReader(s.host)
	if err != nil {
		return err
	}
	s.seg = newSegmenter(&s.noSegments)
	var run [][]byte
	read := false // since the latest error
	handle := func(n int) {
		read = true
		for i := 0; i < n; {
			client := br.from(i)
			run = br.appendDatagrams(run[:0], i)
			for i++; i < n && br.from(i) == client; i++ {
				run = br.appendDatagrams(run, i)
			}
			s.fromHost(client, run)
		}
		clear(run) // keep no buffer of the batch alive
	}
	backoff := time.Duration(0)
	for {
		err := br.serve(handle)
		if read {
			backoff, read = 0, false
		}
		if err == nil {
			continue
		}
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
}
