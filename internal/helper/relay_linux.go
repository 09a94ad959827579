package helper

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// relayFor makes the relay of one inherited host socket to the server
// inside: forward's TCPRelay or UDPRelay, whose flows share budget.
func relayFor(sc nsutil.SocketConfig, f *os.File, cfg nsutil.HelperConfig, dialer insideDialer, stats *forward.Stats, logger *slog.Logger, budget *forward.FlowBudget) (func(context.Context) error, error) {
	switch forward.Proto(sc.Proto) {
	case forward.TCP:
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		tl, ok := ln.(*net.TCPListener)
		if !ok {
			ln.Close()
			return nil, fmt.Errorf("using host socket %s: not a TCP listener", sc.Host)
		}
		r := &forward.TCPRelay{Port: sc.Inside, Dialer: dialer, Wait: cfg.ConnectTimeout, Logger: logger, ProxyProtocol: cfg.ProxyProtocol, Stats: stats}
		return func(ctx context.Context) error { return r.Serve(ctx, tl) }, nil
	case forward.UDP:
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return nil, fmt.Errorf("using host socket %s: not a UDP socket", sc.Host)
		}
		r := &forward.UDPRelay{Port: sc.Inside, Dialer: dialer,
			Timeout: cfg.UDPTimeout, MaxFlows: cfg.UDPMaxFlows, Logger: logger, Stats: stats, Budget: budget}
		return func(ctx context.Context) error { return r.Serve(ctx, uc) }, nil
	}
	return nil, fmt.Errorf("using host socket %s: protocol %s is not supported yet", sc.Host, sc.Proto)
}

// insideDialer opens the inside legs of TCP connections and UDP flows.
type insideDialer interface {
	forward.Dialer
	forward.PacketDialer
}

// chooseDialer chooses how the relays dial the server: from the client's
// own address where the kernel allows it (the server then sees the real
// client), from loopback otherwise, or when asked. With a PROXY protocol
// header the server reads the client from the header; UDP flows then still
// come from the client's address.
func chooseDialer(cfg nsutil.HelperConfig, logger *slog.Logger) insideDialer {
	if cfg.SourceAddress != "client" || len(cfg.Sockets) == 0 {
		return forward.LoopbackDialer{}
	}
	err := forward.CheckTransparent()
	if err == nil {
		err = nsutil.SetupReplyRouting()
	}
	if err != nil {
		logger.Warn("the server will see clients as coming from loopback: this kernel does not let nsbind keep their addresses", "err", err)
		return forward.LoopbackDialer{}
	}
	logger.Debug("routes for replies to the clients' own addresses: from 127.0.0.0/8 and ::1 iif lo to a local table")
	if cfg.ProxyProtocol != 0 {
		return proxyDialer{}
	}
	return forward.TransparentDialer{}
}

// proxyDialer dials TCP from loopback (the PROXY header carries the client)
// and UDP from the client's address.
type proxyDialer struct {
	forward.LoopbackDialer
	udp forward.TransparentDialer
}

func (d proxyDialer) DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error) {
	return d.udp.DialUDP(ctx, client, server)
}
