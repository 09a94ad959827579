package parent

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// statsCollector gathers the counters of --stats by socket: the helper's
// Stats messages (its relays and inside views), the parent's own host
// relays, and on the native path the connections the server accepted
// itself, which only the kernel's socket table shows (forward.AcceptCounter,
// polled while the run lasts).
type statsCollector struct {
	ports map[int]nsutil.PortStats
	// relays are the parent's host relays (hostrelays_linux.go).
	relays interface {
		counters() map[int]*forward.Stats
	}

	mu      sync.Mutex
	counter *forward.AcceptCounter
}

func (c *statsCollector) add(m nsutil.Stats) {
	if c.ports == nil {
		c.ports = make(map[int]nsutil.PortStats)
	}
	for _, p := range m.Ports {
		c.ports[p.Index] = p
	}
}

// acceptPoll is how often the socket table is read for native connections.
const acceptPoll = 200 * time.Millisecond

// primeNative takes note of the connections on the TCP host ports of
// sockets before the run (an earlier run's, in TIME_WAIT), which are not
// counted. Call it once the host sockets are bound.
func (c *statsCollector) primeNative(sockets []nsutil.SocketConfig) {
	var ports []uint16
	for _, s := range sockets {
		if s.Proto == string(forward.TCP) {
			ports = append(ports, s.Host.Port())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counter = forward.NewAcceptCounter(ports)
	c.counter.Poll()
	clear(c.counter.Conns)
}

// countNative polls the socket table for the connections of the primed
// ports until ctx ends.
func (c *statsCollector) countNative(ctx context.Context) {
	go func() {
		t := time.NewTicker(acceptPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.poll()
			}
		}
	}()
}

func (c *statsCollector) poll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counter != nil {
		c.counter.Poll()
	}
}

// merge adds what the parent counted itself to the helper's counters: its
// host relays, and the connections the server accepted natively (those
// seen in the socket table but for the relayed ones: a host relay's
// connection shows twice there, as its client's and as its own to the
// server; a helper relay's or inside view's once).
func (c *statsCollector) merge(sockets []nsutil.SocketConfig) {
	if c.ports == nil {
		c.ports = make(map[int]nsutil.PortStats)
	}
	relayed := make(map[uint16]int64)
	for i, s := range sockets {
		if p, ok := c.ports[i]; ok && s.Proto == string(forward.TCP) {
			relayed[s.Host.Port()] += p.Conns
		}
	}
	if c.relays != nil {
		for i, s := range c.relays.counters() {
			p, ok := c.ports[i]
			if !ok {
				continue
			}
			p.Conns += s.Conns.Load()
			p.Active += s.Active.Load()
			p.Failed += s.Failed.Load()
			p.BytesIn += s.BytesIn.Load()
			p.BytesOut += s.BytesOut.Load()
			p.Datagrams += s.Datagrams.Load()
			c.ports[i] = p
			relayed[sockets[i].Host.Port()] += 2 * s.Conns.Load()
		}
	}
	c.poll()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counter == nil {
		return
	}
	done := make(map[uint16]bool)
	for i, s := range sockets {
		port := s.Host.Port()
		p, ok := c.ports[i]
		if s.Proto != string(forward.TCP) || s.Hidden || done[port] || !ok {
			continue
		}
		done[port] = true
		if n := c.counter.Conns[port] - relayed[port]; n > 0 {
			p.Native = n
			p.Conns += n
			c.ports[i] = p
		}
	}
}

// print writes one line per published host socket, in the order of the
// start lines. What a hidden socket counted (the catch-all of the native
// path) is counted with the first printed socket of its port.
func (c *statsCollector) print(w io.Writer, sockets []nsutil.SocketConfig) {
	c.merge(sockets)
	type portKey struct {
		proto        string
		inside, host uint16
	}
	first := make(map[portKey]int)
	for i, s := range sockets {
		k := portKey{s.Proto, s.Inside, s.Host.Port()}
		if _, ok := first[k]; !ok && !s.Hidden {
			first[k] = i
		}
	}
	for i, s := range sockets {
		j, ok := first[portKey{s.Proto, s.Inside, s.Host.Port()}]
		if !s.Hidden || !ok {
			continue
		}
		h, hok := c.ports[i]
		p, pok := c.ports[j]
		if !hok || !pok {
			continue
		}
		p.Conns += h.Conns
		p.Active += h.Active
		p.Failed += h.Failed
		p.BytesIn += h.BytesIn
		p.BytesOut += h.BytesOut
		p.Datagrams += h.Datagrams
		c.ports[j] = p
		delete(c.ports, i)
	}
	for i, s := range sockets {
		if s.Hidden {
			continue
		}
		p, ok := c.ports[i]
		if !ok {
			fmt.Fprintf(w, "nsbind: %s → :%d/%s: no counters (the helper did not send them)\n", s.Host, s.Inside, s.Proto)
			continue
		}
		fmt.Fprintf(w, "nsbind: %s → :%d/%s: %s\n", s.Host, s.Inside, s.Proto, summary(p, s.Proto))
	}
}

// summary says what one socket moved.
func summary(p nsutil.PortStats, proto string) string {
	if proto == "udp" {
		return fmt.Sprintf("%s, %s, %s in, %s out", count(p.Conns, "flow"), count(p.Datagrams, "datagram"),
			count(p.BytesIn, "byte"), count(p.BytesOut, "byte"))
	}
	s := fmt.Sprintf("%s, %d failed, %s in, %s out", count(p.Conns, "connection"), p.Failed,
		count(p.BytesIn, "byte"), count(p.BytesOut, "byte"))
	if p.Native > 0 {
		s += fmt.Sprintf(" (%d accepted by the server itself, their bytes not counted)", p.Native)
	}
	if p.Active > 0 {
		s += fmt.Sprintf(" (%d still open)", p.Active)
	}
	return s
}

// count is "1 thing" or "N things".
func count(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
