package forward

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A flood of client addresses opens no more descriptors than MaxFlows
// allows, every client is answered, and when the relay ends every
// descriptor and goroutine it had is gone.
func TestUDPRelayFloodBounded(t *testing.T) {
	port := udpServer4(t, udpEcho)
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	const maxFlows, clients, workers = 100, 2000, 8
	r := &UDPRelay{Port: port, MaxFlows: maxFlows}
	relayAddr, cancel, done := startUDPRelay(t, r, loopback4)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		peak    int
		failure error
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(relayAddr))
				if err == nil {
					want := datagram(i, 0, 64)
					var got []byte
					got, err = exchange(c, want, 10*time.Second)
					if err == nil && string(got) != string(want) {
						err = fmt.Errorf("client %d got another's datagram", i)
					}
					c.Close()
				}
				mu.Lock()
				if err != nil && failure == nil {
					failure = err
				}
				peak = max(peak, int(r.Stats.Active.Load()))
				mu.Unlock()
			}
		}()
	}
	for i := range clients {
		next <- i
		if i%100 == 0 {
			// The relay's descriptors: its flows' sockets (the clients'
			// own sockets are at most one per worker).
			if n := openFDs(t) - fds; n > maxFlows+workers+8 {
				t.Errorf("after %d clients %d more descriptors are open, bound %d flows", i, n, maxFlows)
			}
		}
	}
	close(next)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	if peak > maxFlows {
		t.Errorf("%d flows were active at once, bound %d", peak, maxFlows)
	}
	// A client socket may get the port of an earlier one whose flow is
	// still open, and use that flow.
	if n := r.Stats.Conns.Load(); n < clients*9/10 || n > clients {
		t.Errorf("%d flows opened for %d clients", n, clients)
	}
	cancel()
	<-done
	waitFor(t, func() bool { return runtime.NumGoroutine() <= goroutines })
	if n := openFDs(t); n > fds {
		t.Errorf("%d descriptors open after Serve returned, %d before", n, fds)
	}
}

// A burst of one client's datagrams, in runs of one size and between
// sizes (empty ones, a shorter last one, runs longer than one send can
// carry), reaches the server as the same datagrams in the same order: the
// runs the relay sends with one system call arrive cut where they were.
func TestUDPRelayBurstKeepsBoundaries(t *testing.T) {
	var sizes []int
	for _, r := range []struct{ size, n int }{
		{1000, 20}, {500, 1}, {3000, 10}, {0, 1}, {1, 5}, {30000, 3},
		{1400, 100}, {0, 3}, {65507, 2}, {7, 1}, {1400, 50}, {1399, 1}, {1400, 1},
	} {
		for range r.n {
			sizes = append(sizes, r.size)
		}
	}
	sink := udpListen(t, netip.AddrPortFrom(loopback4, 0))
	sink.SetReadBuffer(8 << 20)
	got := make(chan []byte, len(sizes)+2)
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := sink.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			got <- append([]byte(nil), buf[:n]...)
			if n == 2 { // the flow's opening datagrams get an answer
				sink.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: udpAddrOf(sink).Port()}, loopback4)
	c := udpClient(t, relayAddr)
	c.SetWriteBuffer(8 << 20)
	// Two datagrams answered confirm the flow: then runs may go together.
	for range 2 {
		if _, err := exchange(c, []byte{9, 9}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		<-got
	}
	for round := range 3 {
		for i, size := range sizes {
			b := make([]byte, size)
			for j := range b {
				b[j] = byte(i + j + round)
			}
			if _, err := c.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		for i, size := range sizes {
			var b []byte
			select {
			case b = <-got:
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: datagram %d of %d never arrived", round, i, len(sizes))
			}
			if len(b) != size {
				t.Fatalf("round %d: datagram %d has %d bytes, not %d", round, i, len(b), size)
			}
			for j := range b {
				if b[j] != byte(i+j+round) {
					t.Fatalf("round %d: datagram %d differs at byte %d", round, i, j)
				}
			}
		}
	}
}

// A client that sends runs of datagrams with UDP_SEGMENT (QUIC stacks
// do) has them reach the server as the datagrams it sent: the host socket
// takes each run whole (UDP_GRO) and the relay cuts it at the size the
// kernel reports, the last one shorter, as the kernel would have.
func TestUDPRelaySegmentedRunsArriveCut(t *testing.T) {
	sink := udpListen(t, netip.AddrPortFrom(loopback4, 0))
	sink.SetReadBuffer(8 << 20)
	got := make(chan []byte, 256)
	go func() {
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := sink.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n == 2 { // the flow's opening datagrams get an answer
				sink.WriteToUDPAddrPort(buf[:n], from)
				continue
			}
			got <- append([]byte(nil), buf[:n]...)
		}
	}()
	relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: udpAddrOf(sink).Port()}, loopback4)
	c := udpClient(t, relayAddr)
	c.SetWriteBuffer(8 << 20)
	for range 2 {
		if _, err := exchange(c, []byte{9, 9}, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, run := range []struct{ size, total int }{{1000, 10500}, {1400, 1400 * 40}, {1200, 1200*3 + 1}, {300, 600}} {
		b := make([]byte, run.total)
		for j := range b {
			b[j] = byte(j / run.size)
		}
		oob := make([]byte, unix.CmsgSpace(2))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
		*(*uint16)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) = uint16(run.size)
		var serr error
		if err := rc.Write(func(fd uintptr) bool {
			serr = unix.Sendmsg(int(fd), b, oob, nil, 0)
			return serr != unix.EAGAIN
		}); err != nil || serr != nil {
			t.Skipf("this kernel cannot send with UDP_SEGMENT: %v %v", err, serr)
		}
		for i := 0; i*run.size < run.total; i++ {
			want := min(run.size, run.total-i*run.size)
			var d []byte
			select {
			case d = <-got:
			case <-time.After(10 * time.Second):
				t.Fatalf("run of %d: datagram %d never arrived", run.size, i)
			}
			if len(d) != want || d[0] != byte(i) || d[len(d)-1] != byte(i) {
				t.Fatalf("run of %d: datagram %d has %d bytes starting %d, want %d bytes of %d", run.size, i, len(d), d[0], want, byte(i))
			}
		}
	}
}
