package helper

import (
	"log/slog"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

func snapshot(i int, s *forward.Stats) nsutil.PortStats {
	return nsutil.PortStats{Index: i, Conns: s.Conns.Load(), Active: s.Active.Load(), Failed: s.Failed.Load(),
		BytesIn: s.BytesIn.Load(), BytesOut: s.BytesOut.Load(), Datagrams: s.Datagrams.Load()}
}

// statsMessages packs the counters of every socket into Stats messages of
// nsutil.StatsPerMsg sockets at most, so a range of thousands of ports
// stays far below the control channel's message size.
func statsMessages(stats []*forward.Stats) []nsutil.Stats {
	var msgs []nsutil.Stats
	for start := 0; start < len(stats); start += nsutil.StatsPerMsg {
		var m nsutil.Stats
		for i := start; i < min(start+nsutil.StatsPerMsg, len(stats)); i++ {
			m.Ports = append(m.Ports, snapshot(i, stats[i]))
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// sendStats sends the counters to the parent and logs them at debug level.
func sendStats(ctrl *nsutil.Ctrl, sockets []nsutil.SocketConfig, stats []*forward.Stats, logger *slog.Logger) {
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
