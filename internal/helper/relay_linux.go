package helper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// relayFor makes the relay of one host socket to the server inside:
// forward's TCPRelay or UDPRelay, whose flows share budget. It returns the
// socket it serves too, for a relay that is stopped by closing it.
func relayFor(sc nsutil.SocketConfig, f *os.File, cfg nsutil.HelperConfig, dialer insideDialer, stats *forward.Stats, logger *slog.Logger, budget *forward.FlowBudget) (func(context.Context) error, io.Closer, error) {
	switch forward.Proto(sc.Proto) {
	case forward.TCP:
		lf, err := forward.ListenerFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		r := &forward.TCPRelay{Port: sc.Inside, Dialer: dialer, Wait: cfg.ConnectTimeout, Logger: logger, ProxyProtocol: cfg.ProxyProtocol, Stats: stats}
		return func(ctx context.Context) error { return r.ServeFile(ctx, lf) }, forward.Closers{r, lf}, nil
	case forward.UDP:
		pc, err := net.FilePacketConn(f)
		if err != nil {
			return nil, nil, fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return nil, nil, fmt.Errorf("using host socket %s: not a UDP socket", sc.Host)
		}
		r := &forward.UDPRelay{Port: sc.Inside, Dialer: dialer,
			Timeout: cfg.UDPTimeout, MaxFlows: cfg.UDPMaxFlows, Logger: logger, Stats: stats, Budget: budget}
		return func(ctx context.Context) error { return r.Serve(ctx, uc) }, uc, nil
	}
	return nil, nil, fmt.Errorf("using host socket %s: protocol %s is not supported yet", sc.Host, sc.Proto)
}

// refusals passes dials on and notices a client the server refused for as
// long as the relay waits (forward.TCPRelay retries a refused dial for
// --connect-timeout, then resets the client): nothing inside listens on
// that port, which nsbind then says once per port.
type refusals struct {
	insideDialer
	socks  []nsutil.SocketConfig
	wait   time.Duration
	logger *slog.Logger

	mu    sync.Mutex
	first map[netip.AddrPort]time.Time // a client's first refused dial
	said  map[uint16]bool
}

// maxRefused bounds the clients refusals remembers.
const maxRefused = 4096

// lastRetry is how long before the relay gives up a dial counts as its
// last: the relay retries at least every 100 ms.
const lastRetry = 150 * time.Millisecond

func (r *refusals) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	c, err := r.insideDialer.DialTCP(ctx, client, port)
	refused := errors.Is(err, syscall.ECONNREFUSED)
	if err == nil || refused {
		r.note(client, port, refused)
	}
	return c, err
}

func (r *refusals) DialSocket(ctx context.Context, client netip.AddrPort, port uint16) (*os.File, error) {
	f, err := r.insideDialer.DialSocket(ctx, client, port)
	refused := errors.Is(err, syscall.ECONNREFUSED)
	if err == nil || refused {
		r.note(client, port, refused)
	}
	return f, err
}

func (r *refusals) note(client netip.AddrPort, port uint16, refused bool) {
	r.mu.Lock()
	if !refused || r.said[port] {
		delete(r.first, client)
		r.mu.Unlock()
		return
	}
	now := time.Now()
	first, ok := r.first[client]
	if !ok {
		if len(r.first) >= maxRefused {
			clear(r.first)
		}
		first = now
		r.first[client] = now
	}
	if now.Sub(first) < r.wait-lastRetry {
		r.mu.Unlock()
		return
	}
	delete(r.first, client)
	r.said[port] = true
	r.mu.Unlock()
	r.logger.Info(nothingListens(r.socks, port))
}

// insideDialer opens the inside legs of TCP connections and UDP flows.
type insideDialer interface {
	forward.SocketDialer
	forward.PacketDialer
}

// chooseDialer chooses how the relays dial the server: from the client's
// own address where the kernel allows it (the server then sees the real
// client), from loopback otherwise, or when asked. With a PROXY protocol
// header the server reads the client from the header; UDP flows then still
// come from the client's address.
func chooseDialer(cfg nsutil.HelperConfig, logger *slog.Logger) insideDialer {
	d := chooseInsideDialer(cfg, logger)
	return &refusals{insideDialer: d, socks: cfg.Sockets, wait: cfg.ConnectTimeout, logger: logger,
		first: make(map[netip.AddrPort]time.Time), said: make(map[uint16]bool)}
}

func chooseInsideDialer(cfg nsutil.HelperConfig, logger *slog.Logger) insideDialer {
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

// nothingListens is what nsbind says, once per port, when the clients of
// a published TCP port are reset because nothing inside listens on it: the
// port, where it is published, and the ports the server does listen on
// (a docker-order slip, -p 18080:8000 for a server on 8000, shows here).
func nothingListens(socks []nsutil.SocketConfig, port uint16) string {
	var hosts []string
	for _, s := range nsutil.Announced(socks) {
		if s.Inside == port && s.Proto == string(forward.TCP) {
			hosts = append(hosts, s.Host.String())
		}
	}
	msg := fmt.Sprintf("nothing inside listens on port %d (published on %s): its clients are reset after --connect-timeout", port, strings.Join(hosts, " and "))
	var other []string
	for _, p := range insideListeners() {
		if p != port {
			other = append(other, strconv.Itoa(int(p)))
		}
	}
	switch len(other) {
	case 0:
	case 1:
		msg += "; the server listens on port " + other[0]
	default:
		msg += "; the server listens on ports " + strings.Join(other, ", ")
	}
	return msg
}

// insideListeners are the TCP ports something listens on in the helper's
// network namespace, from /proc/net/tcp and tcp6, but for the helper's own
// listeners (outbound, inside views); sorted, each once.
func insideListeners() []uint16 {
	own := make(map[string]bool)
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, fd := range fds {
			if link, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil {
				if ino, ok := strings.CutPrefix(link, "socket:["); ok {
					own[strings.TrimSuffix(ino, "]")] = true
				}
			}
		}
	}
	seen := make(map[uint16]bool)
	var ports []uint16
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || own[f[9]] {
				continue
			}
			_, hexPort, ok := strings.Cut(f[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if !ok || err != nil || seen[uint16(p)] {
				continue
			}
			seen[uint16(p)] = true
			ports = append(ports, uint16(p))
		}
	}
	slices.Sort(ports)
	return ports
}
