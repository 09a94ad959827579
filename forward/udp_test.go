package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// udpListen binds a UDP socket on ap (port 0: the kernel chooses).
func udpListen(t testing.TB, ap netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpAddrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// need6 skips a test on a host without IPv6 loopback.
func need6(t testing.TB) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	c.Close()
}

// udpServe answers every datagram that arrives on the sockets with
// reply(datagram, sender) until the test ends.
func udpServe(t testing.TB, reply func(b []byte, from netip.AddrPort) []byte, socks ...*net.UDPConn) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		for _, c := range socks {
			c.Close()
		}
		wg.Wait()
	})
	for _, c := range socks {
		c.SetReadBuffer(4 << 20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, maxDatagram)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				c.WriteToUDPAddrPort(reply(buf[:n], from), from)
			}
		}()
	}
}

func udpEcho(b []byte, _ netip.AddrPort) []byte { return b }

// udpWhoami replies with the address the datagram came from: which inside
// socket (flow) carried it.
func udpWhoami(_ []byte, from netip.AddrPort) []byte { return []byte(from.String()) }

// udpServer4 is a server on 127.0.0.1 only; udpServerBoth one on 127.0.0.1
// and ::1 with the same port.
func udpServer4(t testing.TB, reply func([]byte, netip.AddrPort) []byte) uint16 {
	c := udpListen(t, netip.AddrPortFrom(loopback4, 0))
	udpServe(t, reply, c)
	return udpAddrOf(c).Port()
}

func udpServerBoth(t testing.TB, reply func([]byte, netip.AddrPort) []byte) uint16 {
	t.Helper()
	for range 20 {
		c4 := udpListen(t, netip.AddrPortFrom(loopback4, 0))
		port := udpAddrOf(c4).Port()
		c6, err := net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback6, port)))
		if err != nil {
			c4.Close()
			continue
		}
		udpServe(t, reply, c4, c6)
		return port
	}
	t.Fatal("no UDP port free on both 127.0.0.1 and ::1")
	return 0
}

// startUDPRelay runs r on a fresh host socket on the loopback address a and
// returns the socket's address.
func startUDPRelay(t testing.TB, r *UDPRelay, a netip.Addr) (netip.AddrPort, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	host := udpListen(t, netip.AddrPortFrom(a, 0))
	if r.Dialer == nil {
		r.Dialer = LoopbackDialer{}
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.DiscardHandler)
	}
	if r.Stats == nil {
		r.Stats = new(Stats)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Serve(ctx, host); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of the end of its context")
		}
	})
	return udpAddrOf(host), cancel, done
}

// udpClient is a client socket connected to ap.
func udpClient(t testing.TB, ap netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends b on c and returns the reply, waiting at most d.
func exchange(c *net.UDPConn, b []byte, d time.Duration) ([]byte, error) {
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// datagram is size bytes: the client and sequence number, then random.
func datagram(client, seq, size int) []byte {
	b := make([]byte, size)
	rand.Read(b)
	if size >= 8 {
		binary.BigEndian.PutUint32(b, uint32(client))
		binary.BigEndian.PutUint32(b[4:], uint32(seq))
	}
	return b
}

// Every client gets its own datagrams back, each whole, over both families.
func TestUDPRelayEcho(t *testing.T) {
	need6(t)
	port := udpServerBoth(t, udpEcho)
	for _, a := range []netip.Addr{loopback4, loopback6} {
		t.Run(a.String(), func(t *testing.T) {
			r := &UDPRelay{Port: port}
			relayAddr, _, _ := startUDPRelay(t, r, a)
			const clients, rounds = 20, 50
			sizes := []int{1, 8, 100, 512, 1400, 1500, 4000, 8192, 9000}
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				c := udpClient(t, relayAddr)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range rounds {
						want := datagram(i, j, sizes[(i+j)%len(sizes)])
						got, err := exchange(c, want, 10*time.Second)
						if err != nil {
							errs <- fmt.Errorf("client %d datagram %d: %w", i, j, err)
							return
						}
						if !bytes.Equal(got, want) {
							errs <- fmt.Errorf("client %d datagram %d: got %d bytes, not the %d it sent", i, j, len(got), len(want))
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if n := r.Stats.Conns.Load(); n != clients {
				t.Errorf("%d flows opened, want one per client: %d", n, clients)
			}
			// The relay counts a reply after sending it: the client may
			// have it a moment before it is counted.
			waitFor(t, func() bool { return r.Stats.Datagrams.Load() >= 2*clients*rounds })
			if n := r.Stats.Datagrams.Load(); n != 2*clients*rounds {
				t.Errorf("%d datagrams counted, want %d", n, 2*clients*rounds)
			}
			waitFor(t, func() bool { return r.Stats.BytesIn.Load() == r.Stats.BytesOut.Load() })
			if in, out := r.Stats.BytesIn.Load(), r.Stats.BytesOut.Load(); in != out || in == 0 {
				t.Errorf("bytes in %d, out %d: want equal and not 0 for an echo", in, out)
			}
		})
	}
}

// The largest datagram of each family passes unchanged.
func TestUDPRelayLargestDatagram(t *testing.T) {
	need6(t)
	port := udpServerBoth(t, udpEcho)
	for _, tt := range []struct {
		addr netip.Addr
		size int
	}{{loopback4, 65507}, {loopback6, 65527}} {
		relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: port}, tt.addr)
		c := udpClient(t, relayAddr)
		want := datagram(0, 0, tt.size)
		got, err := exchange(c, want, 10*time.Second)
		if err != nil {
			t.Fatalf("%d bytes over %s: %v", tt.size, tt.addr, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes over %s came back as %d different bytes", tt.size, tt.addr, len(got))
		}
	}
}

// A client of one family reaches a server that listens on the other only.
func TestUDPRelayFamilyFallback(t *testing.T) {
	need6(t)
	tests := []struct {
		name           string
		client, server netip.Addr
	}{
		{"v6 client, v4 server", loopback6, loopback4},
		{"v4 client, v6 server", loopback4, loopback6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := udpListen(t, netip.AddrPortFrom(tt.server, 0))
			udpServe(t, udpEcho, sc)
			relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: udpAddrOf(sc).Port()}, tt.client)
			c := udpClient(t, relayAddr)
			// The first datagram is refused on the client's family and
			// sent again on the other; the later ones go there directly.
			for i := range 5 {
				want := datagram(0, i, 1000)
				got, err := exchange(c, want, 10*time.Second)
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("datagram %d: %d bytes, %v", i, len(got), err)
				}
			}
		})
	}
}

// A client that sends before the server listens is answered once it does,
// whichever family the server then listens on.
func TestUDPRelayServerStartsLate(t *testing.T) {
	need6(t)
	sc := udpListen(t, netip.AddrPortFrom(loopback4, 0))
	port := udpAddrOf(sc).Port()
	sc.Close() // nothing listens there yet
	relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: port}, loopback6)
	c := udpClient(t, relayAddr)
	// Refused on ::1 and then on 127.0.0.1: lost, as without a relay.
	if _, err := exchange(c, []byte("early"), 200*time.Millisecond); err == nil {
		t.Fatal("a reply with no server")
	}
	sc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback4, port)))
	if err != nil {
		t.Fatal(err)
	}
	udpServe(t, udpEcho, sc)
	for i := range 3 {
		got, err := exchange(c, []byte("late"), 10*time.Second)
		if err != nil || string(got) != "late" {
			t.Fatalf("datagram %d after the server started: %q, %v", i, got, err)
		}
	}
}

// Each flow has its own socket inside, kept while the client sends.
func TestUDPRelayFlowPerClient(t *testing.T) {
	port := udpServer4(t, udpWhoami)
	relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: port}, loopback4)
	seen := make(map[string]bool)
	for range 3 {
		c := udpClient(t, relayAddr)
		first, err := exchange(c, []byte("who"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		again, err := exchange(c, []byte("who"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(first) != string(again) {
			t.Errorf("one client, two inside sockets: %s then %s", first, again)
		}
		if seen[string(first)] {
			t.Errorf("two clients share the inside socket %s", first)
		}
		seen[string(first)] = true
	}
}

// An idle flow ends after the timeout; the client's next datagram opens a
// new one.
func TestUDPRelayIdleTimeout(t *testing.T) {
	port := udpServer4(t, udpWhoami)
	r := &UDPRelay{Port: port, Timeout: time.Second}
	relayAddr, _, _ := startUDPRelay(t, r, loopback4)
	c := udpClient(t, relayAddr)
	first, err := exchange(c, []byte("who"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Traffic keeps the flow open past the timeout.
	for range 8 {
		time.Sleep(200 * time.Millisecond)
		got, err := exchange(c, []byte("who"), 10*time.Second)
		if err != nil || string(got) != string(first) {
			t.Fatalf("flow of an active client changed or failed: %s then %s, %v", first, got, err)
		}
	}
	if n := r.Stats.Active.Load(); n != 1 {
		t.Fatalf("%d flows active, want 1", n)
	}
	waitFor(t, func() bool { return r.Stats.Active.Load() == 0 })
	again, err := exchange(c, []byte("who"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) == string(first) {
		t.Errorf("the idle flow's socket %s still carried the next datagram", first)
	}
	if n := r.Stats.Conns.Load(); n != 2 {
		t.Errorf("%d flows opened, want 2", n)
	}
}

// At MaxFlows, a new client evicts the flow idle longest.
func TestUDPRelayMaxFlowsEvictsIdlest(t *testing.T) {
	port := udpServer4(t, udpWhoami)
	const max = 4
	r := &UDPRelay{Port: port, MaxFlows: max}
	relayAddr, _, _ := startUDPRelay(t, r, loopback4)
	clients := make([]*net.UDPConn, max)
	inside := make([]string, max)
	for i := range clients {
		clients[i] = udpClient(t, relayAddr)
		b, err := exchange(clients[i], []byte("who"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		inside[i] = string(b)
	}
	// Client 0 is the oldest, but uses its flow again: client 1 is now
	// idle longest.
	if b, err := exchange(clients[0], []byte("who"), 10*time.Second); err != nil || string(b) != inside[0] {
		t.Fatalf("client 0: %s, %v", b, err)
	}
	newcomer := udpClient(t, relayAddr)
	if _, err := exchange(newcomer, []byte("who"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := r.Stats.Active.Load(); n > max {
		t.Fatalf("%d flows active, bound %d", n, max)
	}
	// The other clients keep their flows; client 1 gets a new one.
	for _, i := range []int{0, 2, 3, 1} {
		b, err := exchange(clients[i], []byte("who"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if kept := string(b) == inside[i]; kept != (i != 1) {
			t.Errorf("client %d: flow kept %v, want only client 1's flow evicted", i, kept)
		}
	}
}

// Serve returns once its context ends, having closed every flow: no
// goroutine is left and the host socket no longer receives.
func TestUDPRelayShutdown(t *testing.T) {
	port := udpServer4(t, udpEcho)
	before := runtime.NumGoroutine()
	r := &UDPRelay{Port: port}
	relayAddr, cancel, done := startUDPRelay(t, r, loopback4)
	for i := range 50 {
		c := udpClient(t, relayAddr)
		if _, err := exchange(c, datagram(i, 0, 100), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats.Active.Load(); n != 50 {
		t.Fatalf("%d flows active, want 50", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if n := r.Stats.Active.Load(); n != 0 {
		t.Errorf("%d flows still active after Serve returned", n)
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
	// The host socket is closed: its address can be bound again. (Not a
	// probe for ECONNREFUSED: the kernel's ICMP budget, 1000 a second for
	// every test at once, may leave the probe without an answer.)
	again, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(relayAddr))
	if err != nil {
		t.Fatalf("after shutdown the host socket's address is still taken: %v", err)
	}
	again.Close()
}

// recordingDialer dials on loopback and records what it was asked for.
type recordingDialer struct {
	mu    sync.Mutex
	calls [][2]netip.AddrPort
}

func (d *recordingDialer) DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error) {
	d.mu.Lock()
	d.calls = append(d.calls, [2]netip.AddrPort{client, server})
	d.mu.Unlock()
	return LoopbackDialer{}.DialUDP(ctx, client, server)
}

// The relay opens each flow's inside socket through its Dialer, with the
// client's own address, so a dialer can bind that address.
func TestUDPRelayDialerGetsClient(t *testing.T) {
	port := udpServer4(t, udpEcho)
	d := new(recordingDialer)
	relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: port, Dialer: d}, loopback4)
	c := udpClient(t, relayAddr)
	if _, err := exchange(c, []byte("x"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	want := [2]netip.AddrPort{udpAddrOf(c), netip.AddrPortFrom(loopback4, port)}
	if len(d.calls) != 1 || d.calls[0] != want {
		t.Fatalf("dialer calls %v, want [%v]", d.calls, want)
	}
}

// emfileOnce dials on loopback but fails one dial, the first after armed is
// set, with EMFILE, as the kernel does when the process is out of
// descriptors.
type emfileOnce struct {
	mu    sync.Mutex
	armed bool
}

func (d *emfileOnce) DialUDP(ctx context.Context, client, server netip.AddrPort) (*net.UDPConn, error) {
	d.mu.Lock()
	fail := d.armed
	d.armed = false
	d.mu.Unlock()
	if fail {
		return nil, &net.OpError{Op: "socket", Net: "udp", Err: syscall.EMFILE}
	}
	return LoopbackDialer{}.DialUDP(ctx, client, server)
}

// Out of descriptors below MaxFlows, a new client still gets a flow: the
// relay closes the flow idle longest to make room.
func TestUDPRelayOutOfDescriptors(t *testing.T) {
	port := udpServer4(t, udpEcho)
	d := new(emfileOnce)
	r := &UDPRelay{Port: port, Dialer: d}
	relayAddr, _, _ := startUDPRelay(t, r, loopback4)
	for i := range 3 {
		if _, err := exchange(udpClient(t, relayAddr), datagram(i, 0, 10), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	d.armed = true
	d.mu.Unlock()
	if _, err := exchange(udpClient(t, relayAddr), datagram(9, 0, 10), 10*time.Second); err != nil {
		t.Fatalf("new client when out of descriptors: %v", err)
	}
	if n, opened := r.Stats.Active.Load(), r.Stats.Conns.Load(); n != 3 || opened != 4 {
		t.Fatalf("%d flows active of %d opened, want 3 of 4 (one closed to make room)", n, opened)
	}
}

// On a dual-stack host socket ([::]) a v4 client arrives as ::ffff:a.b.c.d:
// its flow goes to the server on 127.0.0.1 and the replies go back to it.
func TestUDPRelayDualStackHostSocket(t *testing.T) {
	need6(t)
	port := udpServer4(t, udpEcho)
	d := new(recordingDialer)
	relayAddr, _, _ := startUDPRelay(t, &UDPRelay{Port: port, Dialer: d}, netip.IPv6Unspecified())
	c := udpClient(t, netip.AddrPortFrom(loopback4, relayAddr.Port()))
	if got, err := exchange(c, []byte("mapped"), 10*time.Second); err != nil || string(got) != "mapped" {
		t.Fatalf("v4 client of a dual-stack host socket: %q, %v", got, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.calls) != 1 || d.calls[0][1] != netip.AddrPortFrom(loopback4, port) {
		t.Fatalf("dialer calls %v, want one to 127.0.0.1:%d", d.calls, port)
	}
}

// Evicting flows whose first replies are on their way does not stall the
// relay: the flow idle longest is closed from the goroutine that reads the
// host socket while that flow's own goroutine may be taking in its first
// replies, which confirm its family. (Confirming took the flow's lock
// inside the socket's read callback, and close waits under that lock for
// the callback to end: the relay stopped reading the host socket.)
func TestUDPRelayEvictsFlowsBeingConfirmed(t *testing.T) {
	port := udpServer4(t, udpEcho)
	r := &UDPRelay{Port: port, MaxFlows: 2}
	relayAddr, _, _ := startUDPRelay(t, r, loopback4)
	for range 20 {
		clients := make([]*net.UDPConn, 50)
		for i := range clients {
			clients[i] = udpClient(t, relayAddr)
		}
		for _, c := range clients {
			// One datagram each: only its reply confirms the flow,
			// which the next clients soon evict.
			c.Write([]byte("one"))
		}
		for _, c := range clients {
			c.Close()
		}
	}
	if _, err := exchange(udpClient(t, relayAddr), []byte("last"), 10*time.Second); err != nil {
		t.Fatalf("after the evictions: %v", err)
	}
}
