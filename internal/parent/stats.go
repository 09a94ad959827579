package parent

import (
	"fmt"
	"io"

	"github.com/nsbind/nsbind/nsutil"
)

// statsCollector gathers the helper's Stats messages (--stats), by socket.
type statsCollector map[int]nsutil.PortStats

func (c statsCollector) add(m nsutil.Stats) {
	for _, p := range m.Ports {
		c[p.Index] = p
	}
}

// print writes one line per published host socket, in the order of the
// start lines. What a hidden socket counted (the catch-all of the native
// path) is counted with the first printed socket of its port.
func (c statsCollector) print(w io.Writer, sockets []nsutil.SocketConfig) {
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
		h, hok := c[i]
		p, pok := c[j]
		if !hok || !pok {
			continue
		}
		p.Conns += h.Conns
		p.Active += h.Active
		p.Failed += h.Failed
		p.BytesIn += h.BytesIn
		p.BytesOut += h.BytesOut
		p.Datagrams += h.Datagrams
		c[j] = p
		delete(c, i)
	}
	for i, s := range sockets {
		if s.Hidden {
			continue
		}
		p, ok := c[i]
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
