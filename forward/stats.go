package forward

import "sync/atomic"

// Stats counts what one published port moved. A nil *Stats counts nothing.
// Every field may be read while the relay runs.
type Stats struct {
	// Conns is the number of connections (TCP) or flows (UDP) opened.
	Conns atomic.Int64
	// Active is the number of connections or flows open now.
	Active atomic.Int64
	// Failed is the number of connections that could not reach the server.
	Failed atomic.Int64
	// BytesIn counts bytes from clients to the server, BytesOut the reverse.
	BytesIn, BytesOut atomic.Int64
	// Datagrams counts UDP datagrams, both ways.
	Datagrams atomic.Int64
}

func (s *Stats) opened() {
	if s != nil {
		s.Conns.Add(1)
		s.Active.Add(1)
	}
}

func (s *Stats) closed(in, out int64) {
	if s != nil {
		s.Active.Add(-1)
		s.BytesIn.Add(in)
		s.BytesOut.Add(out)
	}
}

func (s *Stats) failed() {
	if s != nil {
		s.Failed.Add(1)
	}
}
