package helper

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// Outbound connections, the helper's part. The rules (nsutil.SetupOutbound)
// hold each program's SYN to an outside address in a queue and redirect
// the connection to the helper's listener; the per-SYN loop (serveSYNs)
// connects a host socket from the pool to the same address first and gives
// the SYN the verdict the host's connect got (verdict.go), so the program
// inside sees the host's own answer. The parent supplies the unconnected
// host sockets in batches (internal/parent, sockets_linux.go).

var (
	localhost4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	localhost6 = netip.IPv6Loopback()
)

// outbound is the helper's way out: the pool of host sockets and the
// counters of what went through.
type outbound struct {
	pool  *forward.SocketPool
	stats *forward.Stats
	// budget bounds the UDP flows with the published ports' (main_linux.go).
	budget *forward.FlowBudget
}

// add takes host sockets the parent sent.
func (o *outbound) add(m nsutil.Sockets, files []*os.File) {
	if o == nil || o.pool == nil {
		closeAll(files)
		return
	}
	o.pool.Add(forward.SocketKind(m.Kind), files)
}

// hostPool is the pool of host sockets; nil for a nil o.
func (o *outbound) hostPool() *forward.SocketPool {
	if o == nil {
		return nil
	}
	return o.pool
}

// logTotals logs what outbound connections moved, at debug level.
func (o *outbound) logTotals(logger *slog.Logger) {
	if o == nil {
		return
	}
	s := o.stats
	logger.Debug("outbound totals", "conns", s.Conns.Load(), "failed", s.Failed.Load(),
		"bytes_out", s.BytesIn.Load(), "bytes_in", s.BytesOut.Load(), "datagrams", s.Datagrams.Load())
}

// wayOut is what the rules lead to: the listeners of redirected TCP and
// UDP, the queue of held SYNs, and the plain UDP sockets of forwarded
// loopback ports.
type wayOut struct {
	tcp, udp []closer
	queue    *nsutil.Queue
	fixed    []fixedUDP
	policy   *policy
	closers  []func()
}

// fixedUDP is a forwarded UDP port on loopback inside (--to-host, a
// resolver on the host's loopback) and the host address it leads to.
type fixedUDP struct {
	c  *net.UDPConn
	to netip.AddrPort
}

func (w *wayOut) close() {
	for _, c := range w.closers {
		c()
	}
}

// startOutbound sets up the way out of the namespace and serves it on
// goroutines counted in wg, which end with ctx. Where the kernel lacks
// what it needs, it says so once and the run goes on isolated.
func startOutbound(ctx context.Context, cfg nsutil.OutboundConfig, ctrl *nsutil.Ctrl, wg *sync.WaitGroup, logger *slog.Logger, budget *forward.FlowBudget) (*outbound, error) {
	if cfg.ResolvConf != "" {
		if err := nsutil.BindResolvConf(cfg.ResolvConf); err != nil {
			return nil, err
		}
		logger.Debug("mounted --resolv-conf over /etc/resolv.conf", "file", cfg.ResolvConf)
	}
	// The pool serves the native path's inside view too (director_view_linux.go),
	// which reaches only the published host sockets, also when isolated; it
	// asks the parent for sockets when first used.
	o := &outbound{stats: new(forward.Stats), budget: budget}
	o.pool = &forward.SocketPool{Refill: func(kind forward.SocketKind, n int) error {
		return ctrl.Send(nsutil.WantSockets{Kind: string(kind), N: n})
	}}
	if cfg.Isolated {
		logger.Debug("isolated: no way out of the namespace")
		return o, nil
	}
	w := &wayOut{}
	if err := w.redirect(cfg); err != nil {
		w.close()
		logger.Warn(fmt.Sprintf("no outbound connections: %v; the server runs isolated (only published ports reach it)", err))
		return o, nil
	}
	logger.Debug("outbound rules: default routes via lo, SYNs to outside addresses queued, connections and UDP redirected to the helper")
	if err := w.listenFixedUDP(cfg, logger); err != nil {
		w.close()
		return nil, err
	}
	o.pool.Fill()
	o.serve(ctx, w, wg, logger)
	logger.Debug("outbound connections through host sockets", "forwards", len(cfg.Forwards))
	return o, nil
}

// redirect listens for redirected connections and datagrams, installs the
// rules that lead there, and opens the queue of held SYNs.
func (w *wayOut) redirect(cfg nsutil.OutboundConfig) error {
	var forwards []hostForward
	taken := map[protoAddr]bool{}
	for _, f := range cfg.Forwards {
		hf := hostForward{forward.Proto(f.Proto), unmapAP(f.Inside), f.Host}
		forwards = append(forwards, hf)
		taken[protoAddr{hf.proto, netip.AddrPortFrom(localhost4, hf.inside.Port())}] = true
	}
	// The listeners the rules redirect to, one port for both families,
	// none on a forwarded port (the policy refuses connections to the
	// helper's own sockets, which would then hide the forward).
	tcp, tcpPort, err := listenPair(func(a netip.AddrPort) (closer, error) {
		return net.ListenTCP(outNet("tcp", a), net.TCPAddrFromAddrPort(a))
	}, func(port uint16) bool { return taken[protoAddr{forward.TCP, netip.AddrPortFrom(localhost4, port)}] })
	if err != nil {
		return fmt.Errorf("listening for redirected connections: %w", err)
	}
	w.tcp, w.closers = tcp, append(w.closers, closeEach(tcp))
	udp, udpPort, err := listenPair(func(a netip.AddrPort) (closer, error) {
		return forward.ListenTProxyUDP(a)
	}, func(port uint16) bool { return taken[protoAddr{forward.UDP, netip.AddrPortFrom(localhost4, port)}] })
	if err != nil {
		return fmt.Errorf("listening for redirected datagrams: %w", err)
	}
	w.udp, w.closers = udp, append(w.closers, closeEach(udp))
	var own []protoAddr
	for _, a := range []netip.Addr{localhost4, localhost6} {
		own = append(own, protoAddr{forward.TCP, netip.AddrPortFrom(a, tcpPort)}, protoAddr{forward.UDP, netip.AddrPortFrom(a, udpPort)})
	}
	w.policy = newPolicy(cfg.Isolated, forwards, own)

	rules := nsutil.OutboundRules{Queue: 0, TCPPort: tcpPort, UDPPort: udpPort}
	for _, f := range cfg.Forwards {
		if forward.Proto(f.Proto) == forward.TCP {
			rules.Loopback = append(rules.Loopback, f.Inside)
		}
	}
	if err := nsutil.SetupOutbound(rules); err != nil {
		return err
	}
	q, err := nsutil.OpenQueue(rules.Queue)
	if err != nil {
		return fmt.Errorf("%w: %v", nsutil.ErrNoNetfilter, err)
	}
	w.queue, w.closers = q, append(w.closers, func() { q.Close() })
	return nil
}

// listenFixedUDP listens on the forwarded UDP ports on loopback, which
// are plain sockets inside.
func (w *wayOut) listenFixedUDP(cfg nsutil.OutboundConfig, logger *slog.Logger) error {
	for _, f := range cfg.Forwards {
		if forward.Proto(f.Proto) != forward.UDP {
			continue
		}
		c, err := net.ListenUDP(outNet("udp", f.Inside), net.UDPAddrFromAddrPort(f.Inside))
		if err != nil {
			if f.Inside.Addr().Is6() {
				logger.Debug("not forwarding an IPv6 loopback port", "inside", f.Inside, "err", err)
				continue
			}
			return fmt.Errorf("listening on %s/udp inside to forward it to the host: %w", f.Inside, err)
		}
		w.fixed = append(w.fixed, fixedUDP{c, f.Host})
		w.closers = append(w.closers, func() { c.Close() })
	}
	return nil
}

// serve starts serving the way out: the redirected TCP listeners, the
// redirected and the fixed UDP sockets, and the per-SYN loop.
func (o *outbound) serve(ctx context.Context, w *wayOut, wg *sync.WaitGroup, logger *slog.Logger) {
	decide := func(proto forward.Proto) func(netip.AddrPort) (netip.AddrPort, error) {
		return func(dst netip.AddrPort) (netip.AddrPort, error) { return w.policy.decide(proto, dst) }
	}
	out := &forward.Outbound{Pool: o.pool, Policy: decide(forward.TCP), Logger: logger, Stats: o.stats}
	serve := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	for _, l := range w.tcp {
		serve(func() { out.Serve(ctx, l.(*net.TCPListener)) })
	}
	for _, l := range w.udp {
		u := &forward.UDPOutbound{Pool: o.pool, Policy: decide(forward.UDP), Logger: logger, Stats: o.stats, Budget: o.budget}
		serve(func() { u.ServeTProxy(ctx, l.(*net.UDPConn)) })
	}
	for _, f := range w.fixed {
		u := &forward.UDPOutbound{Pool: o.pool, Logger: logger, Stats: o.stats, Budget: o.budget}
		serve(func() { u.ServeFixed(ctx, f.c, f.to) })
	}
	serve(func() { serveSYNs(ctx, w.queue, out, logger) })
}

// serveSYNs is the per-SYN loop: for each SYN the queue holds, the host
// connects to the same address first (forward.Outbound.Dial, on a
// goroutine of its own, so one slow connect holds up no other SYN), and
// the SYN gets the verdict of how that went.
func serveSYNs(ctx context.Context, q *nsutil.Queue, out *forward.Outbound, logger *slog.Logger) {
	context.AfterFunc(ctx, func() { q.Close() })
	var buf []byte
	for {
		syns, err := q.Next(&buf)
		if err != nil {
			if ctx.Err() == nil {
				logger.Error("outbound connections stopped", "err", err)
			}
			return
		}
		for _, s := range syns {
			go func() {
				err := out.Dial(ctx, s.Src, s.Dst)
				if err := q.Verdict(s, verdictFor(err).queue()); err != nil && ctx.Err() == nil {
					logger.Debug("giving a queued SYN its verdict", "dst", s.Dst, "err", err)
				}
			}()
		}
	}
}

// queue is the verdict as the queue carries it out.
func (v verdict) queue() nsutil.Verdict {
	switch v {
	case accept:
		return nsutil.VerdictAccept
	case refuse:
		return nsutil.VerdictRefuse
	case hostUnreach:
		return nsutil.VerdictHostUnreach
	case netUnreach:
		return nsutil.VerdictNetUnreach
	case prohibited:
		return nsutil.VerdictProhibited
	}
	return nsutil.VerdictDrop
}

type closer interface{ Close() error }

func closeEach(cs []closer) func() {
	return func() {
		for _, c := range cs {
			c.Close()
		}
	}
}

// listenPair listens on 127.0.0.1 and [::1] on one port the kernel picks
// (the redirect rules name one port for both families), other than those
// avoid reports. Without IPv6 it listens on 127.0.0.1 only.
func listenPair(listen func(netip.AddrPort) (closer, error), avoid func(uint16) bool) ([]closer, uint16, error) {
	var err error
	for range 20 {
		var c4 closer
		c4, err = listen(netip.AddrPortFrom(localhost4, 0))
		if err != nil {
			return nil, 0, err
		}
		port := portOf(c4)
		if avoid(port) {
			// Closed only after the next try, so that it picks another.
			defer c4.Close()
			err = syscall.EADDRINUSE
			continue
		}
		c6, err6 := listen(netip.AddrPortFrom(localhost6, port))
		if err6 == nil {
			return []closer{c4, c6}, port, nil
		}
		if !errors.Is(err6, syscall.EADDRINUSE) {
			return []closer{c4}, port, nil
		}
		c4.Close()
		err = err6
	}
	return nil, 0, err
}

func portOf(c closer) uint16 {
	switch c := c.(type) {
	case *net.TCPListener:
		return c.Addr().(*net.TCPAddr).AddrPort().Port()
	case *net.UDPConn:
		return c.LocalAddr().(*net.UDPAddr).AddrPort().Port()
	}
	return 0
}

func outNet(proto string, a netip.AddrPort) string {
	if a.Addr().Is4() {
		return proto + "4"
	}
	return proto + "6"
}
