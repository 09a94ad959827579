package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// portStats are the counters of one published host socket, as the helper
// sends them to the parent when the server has ended. Index is the
// socket's place in helperConfig.Sockets.
type portStats struct {
	Index     int   `json:"i"`
	Conns     int64 `json:"conns,omitempty"`
	Active    int64 `json:"active,omitempty"`
	Failed    int64 `json:"failed,omitempty"`
	BytesIn   int64 `json:"in,omitempty"`
	BytesOut  int64 `json:"out,omitempty"`
	Datagrams int64 `json:"dgrams,omitempty"`
}

func snapshot(i int, s *forward.Stats) portStats {
	return portStats{Index: i, Conns: s.Conns.Load(), Active: s.Active.Load(), Failed: s.Failed.Load(),
		BytesIn: s.BytesIn.Load(), BytesOut: s.BytesOut.Load(), Datagrams: s.Datagrams.Load()}
}

// statsPerMsg bounds the sockets in one stats message, so that a range of
// thousands of ports stays far below the control channel's message size.
const statsPerMsg = 200

// statsMessages packs the counters of every socket into control messages.
func statsMessages(stats []*forward.Stats) []nsutil.Msg {
	var msgs []nsutil.Msg
	for start := 0; start < len(stats); start += statsPerMsg {
		var chunk []portStats
		for i := start; i < min(start+statsPerMsg, len(stats)); i++ {
			chunk = append(chunk, snapshot(i, stats[i]))
		}
		b, err := json.Marshal(chunk)
		if err != nil {
			continue
		}
		msgs = append(msgs, nsutil.Msg{Type: nsutil.MsgStats, Data: b})
	}
	return msgs
}

// sendStats sends the counters to the parent and logs them at debug level.
func sendStats(ctrl *nsutil.Ctrl, sockets []socketConfig, stats []*forward.Stats, logger *slog.Logger) {
	for i, s := range stats {
		p := snapshot(i, s)
		logger.Debug("port stats", "host", sockets[i].Host, "inside", sockets[i].Inside, "proto", sockets[i].Proto,
			"conns", p.Conns, "active", p.Active, "failed", p.Failed, "bytes_in", p.BytesIn, "bytes_out", p.BytesOut, "datagrams", p.Datagrams)
	}
	for _, m := range statsMessages(stats) {
		if err := ctrl.Send(m); err != nil {
			logger.Debug("sending the port stats", "err", err)
			return
		}
	}
}

// statsCollector gathers the stats messages in the parent.
type statsCollector map[int]portStats

func (c statsCollector) add(m nsutil.Msg) {
	var chunk []portStats
	if err := json.Unmarshal(m.Data, &chunk); err != nil {
		return
	}
	for _, p := range chunk {
		c[p.Index] = p
	}
}

// print writes one line per published host socket, in the order of the
// start lines.
func (c statsCollector) print(w io.Writer, sockets []socketConfig) {
	for i, s := range sockets {
		p, ok := c[i]
		if !ok {
			fmt.Fprintf(w, "nsbind: %s → :%d/%s: no counters (the helper did not send them)\n", s.Host, s.Inside, s.Proto)
			continue
		}
		fmt.Fprintf(w, "nsbind: %s → :%d/%s: %s\n", s.Host, s.Inside, s.Proto, p.summary(forward.Proto(s.Proto)))
	}
}

// summary says what one socket moved.
func (p portStats) summary(proto forward.Proto) string {
	if proto == forward.UDP {
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
