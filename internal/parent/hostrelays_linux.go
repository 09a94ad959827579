package parent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// hostRelays is the parent's part of --direct: it relays, on the host, the
// host sockets the server did not take to the one it took (a default
// 127.0.0.1 + ::1 spec whose server binds one family). Only a socket made
// on the host can connect to a host socket, so this relay cannot run in the
// helper. The server sees these clients coming from the host's loopback.
// TCP and UDP alike.
type hostRelays struct {
	ctx   context.Context
	ctrl  *nsutil.Ctrl
	socks []nsutil.SocketConfig
	wait  time.Duration
	// udpTimeout and udpMaxFlows bound the UDP flows as in the helper.
	udpTimeout  time.Duration
	udpMaxFlows int
	logger      *slog.Logger

	mu sync.Mutex
	// lns are the host sockets relayed now (a *net.TCPListener or a
	// *net.UDPConn); closing one stops its relay.
	lns map[int]io.Closer
	// stats count what the relays of each socket moved (--stats).
	stats map[int]*forward.Stats
}

// counters are the counters of every socket relayed so far.
func (p *hostRelays) counters() map[int]*forward.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]*forward.Stats, len(p.stats))
	for i, s := range p.stats {
		out[i] = s
	}
	return out
}

// statsFor is socket i's counters, made on first use.
func (p *hostRelays) statsFor(i int) *forward.Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stats[i] == nil {
		p.stats[i] = new(forward.Stats)
	}
	return p.stats[i]
}

func newHostRelays(ctx context.Context, ctrl *nsutil.Ctrl, cfg nsutil.HelperConfig, logger *slog.Logger) *hostRelays {
	return &hostRelays{ctx: ctx, ctrl: ctrl, socks: cfg.Sockets, wait: cfg.ConnectTimeout,
		udpTimeout: cfg.UDPTimeout, udpMaxFlows: cfg.UDPMaxFlows, logger: logger, lns: make(map[int]io.Closer), stats: make(map[int]*forward.Stats)}
}

// stop stops relaying m.Socket and tells the helper so. Connections
// accepted until now go on to the server.
func (p *hostRelays) stop(m nsutil.Unrelay) {
	p.mu.Lock()
	ln := p.lns[m.Socket]
	delete(p.lns, m.Socket)
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.ctrl.Send(nsutil.Unrelayed(m))
}

// start relays the host socket that came with m, files[0], to m.Target.
// The files are the caller's to close.
func (p *hostRelays) start(m nsutil.Relay, files []*os.File) {
	if err := p.relay(m, files); err != nil {
		p.logger.Error("relay not started", "err", err)
	}
}

func (p *hostRelays) relay(m nsutil.Relay, files []*os.File) error {
	if len(files) != 1 || m.Socket < 0 || m.Socket >= len(p.socks) || m.Target < 0 || m.Target >= len(p.socks) {
		return fmt.Errorf("bad relay request %+v with %d files", m, len(files))
	}
	sc := p.socks[m.Socket]
	to := forward.DialAddr(p.socks[m.Target].Host)
	dialer := forward.AddrDialer{Addr: to.Addr()}
	var (
		sock  io.Closer
		serve func() error
	)
	switch forward.Proto(sc.Proto) {
	case forward.TCP:
		lf, err := forward.ListenerFile(files[0])
		if err != nil {
			return fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		r := &forward.TCPRelay{Port: to.Port(), Dialer: dialer, Wait: p.wait, Logger: p.logger, Stats: p.statsFor(m.Socket)}
		sock, serve = forward.Closers{r, lf}, func() error { return r.ServeFile(p.ctx, lf) }
	case forward.UDP:
		pc, err := net.FilePacketConn(files[0])
		if err != nil {
			return fmt.Errorf("using host socket %s: %w", sc.Host, err)
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			return fmt.Errorf("using host socket %s: not a UDP socket", sc.Host)
		}
		r := &forward.UDPRelay{Port: to.Port(), Dialer: dialer, Timeout: p.udpTimeout, MaxFlows: p.udpMaxFlows, Logger: p.logger, Stats: p.statsFor(m.Socket)}
		sock, serve = uc, func() error { return r.Serve(p.ctx, uc) }
	default:
		return fmt.Errorf("using host socket %s: unknown protocol %s", sc.Host, sc.Proto)
	}
	p.mu.Lock()
	if old := p.lns[m.Socket]; old != nil {
		old.Close()
	}
	p.lns[m.Socket] = sock
	p.mu.Unlock()
	p.logger.Debug("--direct: relaying on the host", "host", sc.Host, "proto", sc.Proto, "to", to)
	go func() {
		if err := serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			p.logger.Error("relay stopped", "host", sc.Host, "err", err)
		}
	}()
	return nil
}
