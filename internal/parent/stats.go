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
// start lines.
func (c statsCollector) print(w io.Writer, sockets []nsutil.SocketConfig) {
	for i, s := range sockets {
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
