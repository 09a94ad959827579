package forward

import (
	"io"
	"net"
	"testing"
	"time"
)

// The benchmarks come in pairs, through the relay and direct to the same
// server on loopback, so one run gives the ratio:
//
//	go test -run '^$' -bench . ./forward/
//
// Each also reports cpu-ns/op, the CPU time of the whole process (client,
// relay and server) per op: on a busy machine steadier than wall time, and
// the difference between a pair is what the relay costs.

// sink reads and discards everything from each connection, then answers
// with one byte so the sender knows all of it arrived.
func sink(c *net.TCPConn) {
	io.Copy(io.Discard, c)
	c.Write([]byte{1})
}

func benchmarkStream(b *testing.B, viaRelay bool) {
	server := listen(b)
	serve(b, server, sink)
	target := addrOf(server)
	if viaRelay {
		target, _, _ = startRelay(b, toAddr{addr: target}, time.Second)
	}
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(target))
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.CloseWrite()
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportCPU(b, cpu0)
	c.Close()
}

// BenchmarkStreamRelay is one TCP stream through the relay.
func BenchmarkStreamRelay(b *testing.B) { benchmarkStream(b, true) }

// BenchmarkStreamDirect is the same stream straight to the server.
func BenchmarkStreamDirect(b *testing.B) { benchmarkStream(b, false) }

// request answers a one-byte request with a one-byte reply, per connection
// or per request on a kept connection.
func request(c *net.TCPConn) {
	b := make([]byte, 1)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
		c.Write(b)
	}
}

func benchmarkConnect(b *testing.B, viaRelay bool) {
	server := listen(b)
	serve(b, server, request)
	target := addrOf(server)
	if viaRelay {
		target, _, _ = startRelay(b, toAddr{addr: target}, time.Second)
	}
	buf := []byte{1}
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(target))
		if err != nil {
			b.Fatal(err)
		}
		c.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.StopTimer()
	reportCPU(b, cpu0)
}

// BenchmarkConnectRelay is a new connection per request through the relay.
func BenchmarkConnectRelay(b *testing.B) { benchmarkConnect(b, true) }

// BenchmarkConnectDirect is the same straight to the server.
func BenchmarkConnectDirect(b *testing.B) { benchmarkConnect(b, false) }

func benchmarkRoundTrip(b *testing.B, viaRelay bool) {
	server := listen(b)
	serve(b, server, request)
	target := addrOf(server)
	if viaRelay {
		target, _, _ = startRelay(b, toAddr{addr: target}, time.Second)
	}
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(target))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := []byte{1}
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		c.Write(buf)
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu0)
}

// BenchmarkRoundTripRelay is request/response on a kept connection through
// the relay (the keep-alive case).
func BenchmarkRoundTripRelay(b *testing.B) { benchmarkRoundTrip(b, true) }

// BenchmarkRoundTripDirect is the same straight to the server.
func BenchmarkRoundTripDirect(b *testing.B) { benchmarkRoundTrip(b, false) }

// reportCPU reports the CPU time the process used since cpu0 per op.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
