package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkUDPRelay measures round trips through the relay to an echo
// server on loopback: clients each keep window datagrams in flight. One
// op is one datagram there and back. "direct" is the same without the
// relay, for comparison.
//
//	go test -run '^$' -bench UDPRelay -benchtime 200000x -count 5 ./forward
func BenchmarkUDPRelay(b *testing.B) {
	for _, bc := range []struct {
		clients, window, size int
	}{
		{1, 1, 64},
		{16, 1, 64},
		{16, 8, 64},
		{16, 8, 1400},
		{4, 4, 16000},
	} {
		name := fmt.Sprintf("clients=%d/window=%d/size=%d", bc.clients, bc.window, bc.size)
		b.Run("direct/"+name, func(b *testing.B) {
			port := udpServer4(b, udpEcho)
			benchRoundTrips(b, netip.AddrPortFrom(loopback4, port), bc.clients, bc.window, bc.size)
		})
		b.Run("relay/"+name, func(b *testing.B) {
			port := udpServer4(b, udpEcho)
			relayAddr, _, _ := startUDPRelay(b, &UDPRelay{Port: port}, loopback4)
			benchRoundTrips(b, relayAddr, bc.clients, bc.window, bc.size)
		})
	}
}

func benchRoundTrips(b *testing.B, ap netip.AddrPort, clients, window, size int) {
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		conns[i] = udpClient(b, ap)
		conns[i].SetReadBuffer(1 << 20)
		// Open the flow before the clock runs.
		if _, err := exchange(conns[i], make([]byte, size), 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(2 * size))
	cpu0 := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, c := range conns {
		n := b.N / clients
		if i < b.N%clients {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]byte, size)
			in := make([]byte, maxDatagram)
			for n > 0 {
				w := min(window, n)
				for range w {
					if _, err := c.Write(out); err != nil {
						b.Error(err)
						return
					}
				}
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				for range w {
					if _, err := c.Read(in); err != nil {
						b.Error(err)
						return
					}
				}
				n -= w
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "roundtrips/s")
	// CPU time of the whole process (clients, relay, server) per round
	// trip: steadier than wall time on a busy machine.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user and system CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUDPBulk sends datagrams one way as fast as a window allows, as
// iperf3 -u and a bulk QUIC sender do: one client writes each datagram
// with a send of its own, a sink server counts them. One op is one
// datagram sent; "lost" is the share that did not arrive, cpu-ns/op the
// CPU time of the whole process per datagram.
//
//	go test -run '^$' -bench UDPBulk -count 5 ./forward
func BenchmarkUDPBulk(b *testing.B) {
	for _, size := range []int{64, 1400, 8000} {
		for _, via := range []string{"direct", "relay"} {
			b.Run(fmt.Sprintf("%s/size=%d", via, size), func(b *testing.B) {
				benchBulk(b, via == "relay", size, nil)
			})
		}
	}
}

// benchBulk is BenchmarkUDPBulk's; send, if not nil, sends a run of
// datagrams of out's size at once and returns how many it sent.
func benchBulk(b *testing.B, viaRelay bool, size int, send func(c *net.UDPConn, out []byte) (int, error)) {
	const window = 256 // datagrams in flight: under the buffers asked for
	sink := udpListen(b, netip.AddrPortFrom(loopback4, 0))
	sink.SetReadBuffer(4 << 20)
	var received atomic.Int64
	progress := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			if _, err := sink.Read(buf); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if received.Add(1)%16 == 0 {
				select {
				case progress <- struct{}{}:
				default:
				}
			}
		}
	}()
	target := udpAddrOf(sink)
	if viaRelay {
		target, _, _ = startUDPRelay(b, &UDPRelay{Port: target.Port()}, loopback4)
	}
	c := udpClient(b, target)
	c.SetWriteBuffer(4 << 20)
	// Open the flow (and confirm its family) before the clock runs.
	out := make([]byte, size)
	for received.Load() < 2 {
		c.Write(out)
		time.Sleep(time.Millisecond)
	}
	base := received.Load()
	b.SetBytes(int64(size))
	cpu0 := cpuTime()
	b.ResetTimer()
	lost := int64(0)
	for sent := int64(0); sent < int64(b.N); {
		if sent-lost-(received.Load()-base) >= window {
			select {
			case <-progress:
			case <-time.After(20 * time.Millisecond):
				// No progress: what is in flight is lost.
				lost = sent - (received.Load() - base)
			}
			continue
		}
		if send != nil {
			n, err := send(c, out)
			if err != nil {
				b.Fatal(err)
			}
			sent += int64(n)
			continue
		}
		if _, err := c.Write(out); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	// Wait for the tail, bounded.
	for deadline := time.Now().Add(time.Second); received.Load()-base < int64(b.N) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	got := received.Load() - base
	b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "%lost")
	b.ReportMetric(float64(got)/b.Elapsed().Seconds(), "dgrams/s")
	reportCPU(b, cpu0)
}
