package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Outbound carries the TCP connections that programs inside open to the
// world out through host sockets. Its two halves meet on the flow:
//
//   - Dial runs when a program's SYN is held in the queue (nsutil.Queue):
//     it connects a host socket to the destination, so the host's answer is
//     known before the program's handshake completes, and keeps the
//     connection for Serve.
//   - Serve accepts the connections the rules redirect to the helper once
//     Dial succeeded, finds each one's host connection by the program's
//     address and original destination (SO_ORIGINAL_DST), and splices the
//     two with the relay the published ports use.
//
// Dial and Serve may run on any goroutines.
type Outbound struct {
	// Pool supplies unconnected host sockets.
	Pool *SocketPool
	// Policy, if not nil, says where on the host a connection to dst
	// (its original destination inside) goes, or returns the error that
	// refuses it (the program then gets the verdict of that error). The
	// helper decides it from its own configuration, never from the path
	// the connection took: a program may connect to the listener Serve
	// accepts on directly. Without Policy, ToHost decides.
	Policy func(dst netip.AddrPort) (netip.AddrPort, error)
	// ToHost maps loopback addresses inside to host addresses (--to-host,
	// a resolver on loopback) when Policy is nil; other destinations are
	// dialed as they are.
	ToHost map[netip.AddrPort]netip.AddrPort
	// Logger gets per-connection events at debug level.
	Logger *slog.Logger
	// Stats, if not nil, counts connections and bytes: BytesIn from the
	// programs inside to the world, BytesOut back; Failed counts host
	// connections that failed.
	Stats *Stats

	mu      sync.Mutex
	pending map[outFlow]*outDialing
}

// outFlow identifies a connection by the program's address and where it
// connects to.
type outFlow struct{ src, dst netip.AddrPort }

// outDialing is a host connection made for a held SYN.
type outDialing struct {
	done chan struct{} // closed when conn/err are set
	conn *net.TCPConn
	err  error
	// expire drops a connection the program never completes.
	expire *time.Timer
}

// unclaimed bounds how long a host connection waits for the program's
// redirected connection (the program may give up between its SYN and the
// accept).
const unclaimed = 30 * time.Second

// Dial connects a host socket for the connection that the program at src
// opens to dst, and keeps it for Serve. It returns the host's error, nil
// when the host connected. A second Dial of the same flow (a retransmitted
// SYN) waits for the first and returns its result.
func (o *Outbound) Dial(ctx context.Context, src, dst netip.AddrPort) error {
	k := outFlow{unmapPort(src), unmapPort(dst)}
	o.mu.Lock()
	if o.pending == nil {
		o.pending = make(map[outFlow]*outDialing)
	}
	if d, ok := o.pending[k]; ok {
		o.mu.Unlock()
		select {
		case <-d.done:
			return d.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	d := &outDialing{done: make(chan struct{})}
	o.pending[k] = d
	o.mu.Unlock()

	d.conn, d.err = o.dialHost(ctx, k.dst)
	o.mu.Lock()
	if d.err != nil {
		delete(o.pending, k)
	} else {
		d.expire = time.AfterFunc(unclaimed, func() {
			if o.claim(k, d) {
				reset(d.conn)
			}
		})
	}
	o.mu.Unlock()
	close(d.done)
	if d.err != nil {
		o.Stats.failed()
		o.Logger.Debug("outbound connection failed on the host", "src", src, "dst", dst, "err", d.err)
	}
	return d.err
}

// claim removes d from the pending flows if it is still there.
func (o *Outbound) claim(k outFlow, d *outDialing) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pending[k] != d {
		return false
	}
	delete(o.pending, k)
	return true
}

// take returns the host connection dialed for k, if any.
func (o *Outbound) take(k outFlow) *net.TCPConn {
	o.mu.Lock()
	d, ok := o.pending[k]
	o.mu.Unlock()
	if !ok {
		return nil
	}
	<-d.done
	if d.err != nil || !o.claim(k, d) {
		return nil
	}
	d.expire.Stop()
	return d.conn
}

// hostAddr is where a connection to dst goes on the host, or the error
// that refuses it.
func (o *Outbound) hostAddr(dst netip.AddrPort) (netip.AddrPort, error) {
	if o.Policy != nil {
		return o.Policy(dst)
	}
	if h, ok := o.ToHost[dst]; ok {
		return h, nil
	}
	return dst, nil
}

func (o *Outbound) dialHost(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	to, err := o.hostAddr(dst)
	if err != nil {
		return nil, err
	}
	f, err := o.Pool.Get(ctx, KindFor(TCP, to.Addr()))
	if err != nil {
		return nil, err
	}
	return connectHostTCP(ctx, f, to)
}

// Serve accepts the redirected connections on ln until ctx is done, then
// closes ln and returns once every connection has ended.
func (o *Outbound) Serve(ctx context.Context, ln *net.TCPListener) error {
	return acceptLoop(ctx, ln.Addr(), func() { ln.Close() }, ln.AcceptTCP, nil, o.Logger, o.handle)
}

func (o *Outbound) handle(ctx context.Context, inside *net.TCPConn) {
	peer, ok := tcpAddrPort(inside.RemoteAddr())
	if !ok {
		// Reset before accept returned: there is no flow to look up.
		o.Logger.Debug("redirected connection without a peer address")
		reset(inside)
		return
	}
	src := unmapPort(peer)
	dst, err := OriginalDst(inside)
	if err != nil {
		o.Logger.Debug("redirected connection without an original destination", "src", src, "err", err)
		reset(inside)
		return
	}
	host := o.take(outFlow{src, dst})
	if host == nil {
		// The SYN did not pass through Dial (or its connection expired):
		// dial now; a failure can only be a reset.
		if err := o.Dial(ctx, src, dst); err != nil {
			reset(inside)
			return
		}
		if host = o.take(outFlow{src, dst}); host == nil {
			reset(inside)
			return
		}
	}
	debug := o.Logger.Enabled(ctx, slog.LevelDebug)
	if debug {
		o.Logger.Debug("outbound connection open", "src", src, "dst", dst, "host", host.RemoteAddr())
	}
	o.Stats.opened()
	in, out := relay(ctx, inside, host)
	o.Stats.closed(in, out)
	if debug {
		o.Logger.Debug("outbound connection closed", "src", src, "dst", dst, "bytes_out", in, "bytes_in", out)
	}
}

// OriginalDst is the address a redirected connection was made to, from
// SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6): conntrack keeps
// it, the socket's own address is the redirect target.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var (
		ap   netip.AddrPort
		gerr error
	)
	err = rc.Control(func(fd uintptr) {
		// The family of the connection, not of the socket: an IPv6
		// socket's IPv4 connection (an IPv4-mapped local address) has an
		// IPv4 original destination.
		local, err := unix.Getsockname(int(fd))
		if err != nil {
			gerr = err
			return
		}
		level := unix.SOL_IP
		if sa, ok := local.(*unix.SockaddrInet6); ok && !netip.AddrFrom16(sa.Addr).Is4In6() {
			level = unix.SOL_IPV6
		}
		var buf [unix.SizeofSockaddrInet6]byte
		n := uint32(len(buf))
		// x/sys has no getsockopt that returns a sockaddr.
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, uintptr(level), unix.SO_ORIGINAL_DST,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if e != 0 {
			gerr = e
			return
		}
		var ok bool
		if ap, ok = ParseSockaddr(buf[:n]); !ok {
			gerr = fmt.Errorf("unexpected address of %d bytes", n)
		}
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	if gerr != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", gerr)
	}
	return ap, nil
}

func unmapPort(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
