package forward

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
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

// toAddrSocket is toAddr as a SocketDialer: the inside leg as a bare
// socket, as the helper's dialers open it.
type toAddrSocket struct{ toAddr }

func (d toAddrSocket) DialSocket(ctx context.Context, _ netip.AddrPort, _ uint16) (*os.File, error) {
	return dialSocket(ctx, netip.AddrPort{}, d.addr, 0)
}

func benchmarkConnect(b *testing.B, viaRelay bool, d func(netip.AddrPort) Dialer) {
	server := listen(b)
	serve(b, server, request)
	target := addrOf(server)
	if viaRelay {
		target, _, _ = startRelay(b, d(target), time.Second)
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

func socketTo(a netip.AddrPort) Dialer { return toAddrSocket{toAddr{addr: a}} }
func connTo(a netip.AddrPort) Dialer   { return toAddr{addr: a} }

// BenchmarkConnectRelay is a new connection per request through the relay,
// whose inside leg is a bare socket (as in the helper).
func BenchmarkConnectRelay(b *testing.B) { benchmarkConnect(b, true, socketTo) }

// BenchmarkConnectRelayNetConn is the same with the inside leg a
// *net.TCPConn, as a Dialer without DialSocket gives it: what the bare
// socket saves.
func BenchmarkConnectRelayNetConn(b *testing.B) { benchmarkConnect(b, true, connTo) }

// BenchmarkConnectDirect is the same straight to the server.
func BenchmarkConnectDirect(b *testing.B) { benchmarkConnect(b, false, nil) }

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
