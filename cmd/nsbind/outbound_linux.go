package main

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

// The parent's part of outbound connections: it makes unconnected host
// sockets when the helper asks (MsgSockets) and sends them over. Sockets
// made ahead, in batches, and connected by the helper itself cost no round
// trip per connection, and connect() in the helper returns the host's own
// error, which the helper turns into the same error inside.
func supplySockets(ctrl *nsutil.Ctrl, m nsutil.Msg, logger *slog.Logger) {
	kind := forward.SocketKind(m.Kind)
	n := min(max(m.N, 1), nsutil.MaxFiles)
	files, err := forward.NewHostSockets(kind, n)
	if err != nil {
		logger.Debug("making host sockets for outbound connections", "err", err)
	}
	// An answer without sockets still tells the helper to ask again.
	ctrl.Send(nsutil.Msg{Type: nsutil.MsgSockets, Kind: m.Kind}, files...)
	for _, f := range files {
		f.Close()
	}
}

// outbound is the helper's part: the rules, the queue of held SYNs, the
// listeners the rules redirect to, and the pool of host sockets.
type outbound struct {
	pool  *forward.SocketPool
	stats *forward.Stats
}

// add takes host sockets the parent sent.
func (o *outbound) add(m nsutil.Msg, files []*os.File) {
	if o == nil || o.pool == nil {
		for _, f := range files {
			f.Close()
		}
		return
	}
	o.pool.Add(forward.SocketKind(m.Kind), files)
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

// startOutbound sets up the way out of the namespace (see
// nsutil.SetupOutbound) and starts serving it on goroutines counted in wg,
// which end with ctx. Where the kernel lacks what it needs, it says so once
// and the run goes on isolated.
func startOutbound(ctx context.Context, cfg outboundConfig, ctrl *nsutil.Ctrl, wg *sync.WaitGroup, logger *slog.Logger) (*outbound, error) {
	if cfg.ResolvConf != "" {
		if err := nsutil.BindResolvConf(cfg.ResolvConf); err != nil {
			return nil, err
		}
	}
	o := &outbound{stats: new(forward.Stats)}
	if cfg.Isolated {
		logger.Debug("isolated: no way out of the namespace")
		return o, nil
	}
	o.pool = &forward.SocketPool{Refill: func(kind forward.SocketKind, n int) error {
		return ctrl.Send(nsutil.Msg{Type: nsutil.MsgSockets, Kind: string(kind), N: n})
	}}

	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	isolated := func(err error) (*outbound, error) {
		closeAll()
		logger.Warn(fmt.Sprintf("no outbound connections: %v; the server runs isolated (only published ports reach it)", err))
		return &outbound{stats: o.stats}, nil
	}

	// The listeners the rules redirect to, one port for both families.
	tcp, tcpPort, err := listenPair(func(a netip.AddrPort) (closer, error) {
		return net.ListenTCP(outNet("tcp", a), net.TCPAddrFromAddrPort(a))
	})
	if err != nil {
		return isolated(fmt.Errorf("listening for redirected connections: %w", err))
	}
	closers = append(closers, closeEach(tcp))
	udp, udpPort, err := listenPair(func(a netip.AddrPort) (closer, error) {
		return forward.ListenTProxyUDP(a)
	})
	if err != nil {
		return isolated(fmt.Errorf("listening for redirected datagrams: %w", err))
	}
	closers = append(closers, closeEach(udp))

	rules := nsutil.OutboundRules{Queue: 0, TCPPort: tcpPort, UDPPort: udpPort}
	toHost := make(map[netip.AddrPort]netip.AddrPort)
	for _, f := range cfg.Forwards {
		if f.Proto == forward.TCP {
			rules.Loopback = append(rules.Loopback, f.Inside)
			toHost[f.Inside] = f.Host
		}
	}
	if err := nsutil.SetupOutbound(rules); err != nil {
		return isolated(err)
	}
	q, err := nsutil.OpenQueue(rules.Queue)
	if err != nil {
		return isolated(fmt.Errorf("%w: %v", nsutil.ErrNoNetfilter, err))
	}
	closers = append(closers, func() { q.Close() })

	// Forwarded UDP ports on loopback are plain sockets inside.
	type fixedUDP struct {
		c  *net.UDPConn
		to netip.AddrPort
	}
	var fixed []fixedUDP
	for _, f := range cfg.Forwards {
		if f.Proto != forward.UDP {
			continue
		}
		c, err := net.ListenUDP(outNet("udp", f.Inside), net.UDPAddrFromAddrPort(f.Inside))
		if err != nil {
			if f.Inside.Addr().Is6() {
				logger.Debug("not forwarding an IPv6 loopback port", "inside", f.Inside, "err", err)
				continue
			}
			closeAll()
			return nil, fmt.Errorf("listening on %s/udp inside to forward it to the host: %w", f.Inside, err)
		}
		fixed = append(fixed, fixedUDP{c, f.Host})
		closers = append(closers, func() { c.Close() })
	}

	o.pool.Fill()
	out := &forward.Outbound{Pool: o.pool, ToHost: toHost, Logger: logger, Stats: o.stats}
	serve := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	for _, l := range tcp {
		serve(func() { out.Serve(ctx, l.(*net.TCPListener)) })
	}
	for _, l := range udp {
		u := &forward.UDPOutbound{Pool: o.pool, Logger: logger, Stats: o.stats}
		serve(func() { u.ServeTProxy(ctx, l.(*net.UDPConn)) })
	}
	for _, f := range fixed {
		u := &forward.UDPOutbound{Pool: o.pool, Logger: logger, Stats: o.stats}
		serve(func() { u.ServeFixed(ctx, f.c, f.to) })
	}
	serve(func() {
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
					if err := q.Verdict(s, verdictFor(err)); err != nil && ctx.Err() == nil {
						logger.Debug("giving a queued SYN its verdict", "dst", s.Dst, "err", err)
					}
				}()
			}
		}
	})
	logger.Debug("outbound connections through host sockets", "tcp_port", tcpPort, "udp_port", udpPort, "forwards", len(cfg.Forwards))
	return o, nil
}

// verdictFor turns the host's connect error into what the program's
// connect() inside gets.
func verdictFor(err error) nsutil.Verdict {
	switch {
	case err == nil:
		return nsutil.VerdictAccept
	case errors.Is(err, syscall.ECONNREFUSED):
		return nsutil.VerdictRefuse
	case errors.Is(err, syscall.EHOSTUNREACH):
		return nsutil.VerdictHostUnreach
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
		return nsutil.VerdictNetUnreach
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nsutil.VerdictProhibited
	}
	// ETIMEDOUT, or no host socket in time: the program's own SYN
	// retries decide.
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
// (the redirect rules name one port for both families). Without IPv6 it
// listens on 127.0.0.1 only.
func listenPair(listen func(netip.AddrPort) (closer, error)) ([]closer, uint16, error) {
	var err error
	for range 20 {
		var c4 closer
		c4, err = listen(netip.AddrPortFrom(localhost4, 0))
		if err != nil {
			return nil, 0, err
		}
		port := portOf(c4)
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
