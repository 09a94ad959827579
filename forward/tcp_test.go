package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// toAddr dials one fixed address, standing in for the server inside.
type toAddr struct {
	addr     netip.AddrPort
	refusals chan struct{} // if not nil, gets a value for every refused dial
}

func (d toAddr) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(d.addr))
	if err != nil && d.refusals != nil && errors.Is(err, syscall.ECONNREFUSED) {
		select {
		case d.refusals <- struct{}{}:
		default:
		}
	}
	return c, err
}

func listen(t testing.TB) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func addrOf(ln *net.TCPListener) netip.AddrPort { return ln.Addr().(*net.TCPAddr).AddrPort() }

// serve runs handler for every connection of ln until the test ends.
func serve(t testing.TB, ln *net.TCPListener, handler func(*net.TCPConn)) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handler(c)
			}()
		}
	}()
}

// echo copies the connection back to itself, then half-closes.
func echo(c *net.TCPConn) {
	io.Copy(c, c)
	c.CloseWrite()
}

// startRelay relays a fresh host listener to dialer and returns its address.
func startRelay(t testing.TB, dialer Dialer, wait time.Duration) (netip.AddrPort, context.CancelFunc, <-chan error) {
	t.Helper()
	host := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &TCPRelay{Port: 80, Dialer: dialer, Wait: wait, Logger: slog.New(slog.DiscardHandler), Stats: new(Stats)}
	result := make(chan error, 1)
	done := make(chan error) // closed when Serve returns
	go func() {
		err := r.Serve(ctx, host)
		result <- err
		close(done)
	}()
	go func() {
		if err := <-result; err != nil {
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
	return addrOf(host), cancel, done
}

func dial(t testing.TB, ap netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c
}

func TestRelayConcurrentTransfers(t *testing.T) {
	server := listen(t)
	serve(t, server, echo)
	relayAddr, _, _ := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)

	const conns, size = 50, 4 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoRoundTrip(relayAddr, size)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// echoRoundTrip sends size random bytes through an echo server, half-closes,
// and checks the reply by hash.
func echoRoundTrip(ap netip.AddrPort, size int) error {
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return err
	}
	if err := <-werr; err != nil {
		return err
	}
	if n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return errors.New("echo reply differs from what was sent")
	}
	return nil
}

func TestRelayHalfClose(t *testing.T) {
	server := listen(t)
	serve(t, server, func(c *net.TCPConn) {
		// Answer only once the client has finished sending.
		n, _ := io.Copy(io.Discard, c)
		c.Write([]byte{byte(n)})
	})
	relayAddr, _, _ := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	c := dial(t, relayAddr)
	c.Write([]byte("hello"))
	c.CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(reply, []byte{5}) {
		t.Fatalf("reply %v, want [5]: the server did not see the client's half-close", reply)
	}
}

func TestRelayServerResetReachesClient(t *testing.T) {
	server := listen(t)
	serve(t, server, func(c *net.TCPConn) {
		b := make([]byte, 1)
		c.Read(b)
		reset(c)
	})
	relayAddr, _, _ := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	c := dial(t, relayAddr)
	c.Write([]byte("x"))
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want ECONNRESET", err)
	}
}

func TestRelayClientResetReachesServer(t *testing.T) {
	server := listen(t)
	got := make(chan error, 1)
	serve(t, server, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(c)
		got <- err
	})
	relayAddr, _, _ := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	c := dial(t, relayAddr)
	c.Write([]byte("x"))
	reset(c)
	if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("server read: %v, want ECONNRESET", err)
	}
}

func TestRelayWaitsForServer(t *testing.T) {
	server := listen(t)
	target := addrOf(server)
	server.Close() // nothing listens there yet
	refusals := make(chan struct{}, 1)
	relayAddr, _, _ := startRelay(t, toAddr{addr: target, refusals: refusals}, 10*time.Second)
	c := dial(t, relayAddr)
	<-refusals // the relay tried and was refused: now the server starts
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(target))
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, echo)
	c.Write([]byte("late"))
	c.CloseWrite()
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "late" {
		t.Fatalf("reply %q, %v; want \"late\"", reply, err)
	}
}

func TestRelayWaitIsBounded(t *testing.T) {
	server := listen(t)
	target := addrOf(server)
	server.Close()
	relayAddr, _, _ := startRelay(t, toAddr{addr: target}, 200*time.Millisecond)
	c := dial(t, relayAddr)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, err := io.ReadAll(c)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want a reset once the wait is over", err)
	}
}

func TestRelayShutdownDeliversWhatServerSends(t *testing.T) {
	server := listen(t)
	accepted, release := make(chan struct{}), make(chan struct{})
	serve(t, server, func(c *net.TCPConn) {
		close(accepted)
		<-release
		c.Write([]byte("last words"))
	})
	relayAddr, cancel, done := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	c := dial(t, relayAddr)
	<-accepted // the relay has dialed the server
	cancel()
	close(release)
	reply, err := io.ReadAll(c)
	if err != nil || string(reply) != "last words" {
		t.Fatalf("reply %q, %v; want \"last words\"", reply, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its connections ended")
	}
	if _, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(relayAddr)); err == nil {
		t.Fatal("the host listener still accepts after shutdown")
	}
}

func TestRelayNoGoroutineLeak(t *testing.T) {
	server := listen(t)
	serve(t, server, echo)
	before := runtime.NumGoroutine()
	relayAddr, cancel, done := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	for range 200 {
		if err := echoRoundTrip(relayAddr, 1000); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before+2 })
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
