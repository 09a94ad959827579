package forward

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
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
