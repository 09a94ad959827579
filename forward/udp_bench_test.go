package forward

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
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
