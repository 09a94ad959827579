package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// A test that runs the process out of descriptors: wait
				// for some, as a server would.
				time.Sleep(time.Millisecond)
				continue
			}
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

// openFDs counts the descriptors of the test process.
func openFDs(t testing.TB) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(fds)
}

// Fault: no goroutine and no descriptor is left behind by 100,000 short
// connections, each a full round trip through the relay.
func TestRelayNoLeakAfterManyConnections(t *testing.T) {
	const conns, workers = 100_000, 8
	server := listen(t)
	serve(t, server, echo)
	relayAddr, cancel, done := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	// Warm up, so the runtime's own goroutines and descriptors exist
	// before counting.
	if err := shortConn(relayAddr); err != nil {
		t.Fatal(err)
	}
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	var next atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for i := next.Add(1); i <= conns; i = next.Add(1) {
				if i%2000 == 0 {
					// Under the race detector sync.Pool drops a quarter of
					// what is put in it, Go's splice pipes too, and only a
					// garbage collection closes those: after a test with big
					// buffers that may be thousands of connections away.
					runtime.GC()
				}
				if err := shortConn(relayAddr); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Every connection has ended on the client's side; the relay's and
	// the server's goroutines end right after. Go keeps the pipes of
	// finished splices in a pool and closes those it drops when a garbage
	// collection finalizes them: collect, so that only a leak remains.
	waitFor(t, func() bool {
		runtime.GC()
		return runtime.NumGoroutine() <= goroutines && openFDs(t) <= fds
	})
	cancel()
	<-done
	waitFor(t, func() bool { return runtime.NumGoroutine() < goroutines })
}

// shortConn sends one byte through an echo server, reads it back and
// closes.
func shortConn(ap netip.AddrPort) error {
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	c.CloseWrite()
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(b) != "x" {
		return fmt.Errorf("echo %q, want \"x\"", b)
	}
	return nil
}

// outOfFDs fails its first dials with EMFILE, as a helper out of
// descriptors does, then dials for real.
type outOfFDs struct {
	toAddr
	failures atomic.Int32
}

func (d *outOfFDs) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	if d.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	return d.toAddr.DialTCP(ctx, client, port)
}

// Fault: a connection accepted while the helper is out of descriptors
// waits for one instead of being dropped.
func TestRelayWaitsForDescriptors(t *testing.T) {
	server := listen(t)
	serve(t, server, echo)
	d := &outOfFDs{toAddr: toAddr{addr: addrOf(server)}}
	d.failures.Store(5)
	relayAddr, _, _ := startRelay(t, d, 10*time.Second)
	if err := echoRoundTrip(relayAddr, 1000); err != nil {
		t.Fatalf("%v (the relay gave up on the first EMFILE)", err)
	}
	if d.failures.Load() >= 0 {
		t.Fatalf("the dialer failed only %d times", 5-d.failures.Load())
	}
}

// Fault: a client that stops reading holds the server back through the
// relay (back-pressure): the server's writes block once the kernel's
// socket buffers are full, instead of nsbind buffering without bound.
// When the client reads again it gets every byte the server wrote.
func TestRelayBackPressure(t *testing.T) {
	const limit = 256 << 20 // the server gives up here: no back-pressure
	server := listen(t)
	written := make(chan int64, 1)
	serve(t, server, func(c *net.TCPConn) {
		chunk := make([]byte, 64<<10)
		var n int64
		for n < limit {
			// A write that cannot finish in 2s means the stream is
			// held back; that ends the flood.
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			for i := range chunk {
				chunk[i] = byte((n + int64(i)) % 251)
			}
			k, err := c.Write(chunk)
			n += int64(k)
			if err != nil {
				break
			}
		}
		written <- n
		c.Close()
	})
	relayAddr, _, _ := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	c := dial(t, relayAddr)
	c.SetDeadline(time.Now().Add(120 * time.Second))
	n := <-written // the client has not read a byte yet
	// Socket buffers (autotuned, up to tcp_rmem and tcp_wmem maxima) on
	// both legs and the splice pipe: tens of MiB at most.
	if n >= 64<<20 {
		t.Fatalf("the server wrote %d MiB to a client that reads nothing: no back-pressure", n>>20)
	}
	var got int64
	buf := make([]byte, 64<<10)
	for {
		k, err := c.Read(buf)
		for i := range k {
			if buf[i] != byte((got+int64(i))%251) {
				t.Fatalf("byte %d differs", got+int64(i))
			}
		}
		got += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", got, err)
		}
	}
	if got != n {
		t.Fatalf("the client read %d bytes, the server wrote %d", got, n)
	}
	t.Logf("the server stalled after %d KiB", n>>10)
}

// burstDialer holds the first two dials until both have started, then
// fails both with EMFILE, as in a burst of connections accepted when the
// last descriptors went; later dials are real.
type burstDialer struct {
	toAddr
	dials   atomic.Int32
	arrived chan struct{}
	proceed chan struct{}
}

func (d *burstDialer) DialTCP(ctx context.Context, client netip.AddrPort, port uint16) (*net.TCPConn, error) {
	if d.dials.Add(1) <= 2 {
		d.arrived <- struct{}{}
		<-d.proceed
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", syscall.EMFILE)}
	}
	return d.toAddr.DialTCP(ctx, client, port)
}

// Fault: two connections accepted in a burst both find no descriptor to
// dial the server. One waits for a descriptor and is served; the other is
// refused at once, freeing its own, instead of both holding theirs while
// waiting for one.
func TestRelayOneConnectionWaitsForDescriptors(t *testing.T) {
	server := listen(t)
	serve(t, server, echo)
	d := &burstDialer{toAddr: toAddr{addr: addrOf(server)}, arrived: make(chan struct{}), proceed: make(chan struct{})}
	relayAddr, _, _ := startRelay(t, d, 10*time.Second)
	results := make(chan error, 2)
	for range 2 {
		go func() { results <- echoRoundTrip(relayAddr, 1000) }()
	}
	<-d.arrived
	<-d.arrived
	close(d.proceed)
	var served, refused int
	for range 2 {
		switch err := <-results; {
		case err == nil:
			served++
		case errors.Is(err, syscall.ECONNRESET):
			refused++
		default:
			t.Fatal(err)
		}
	}
	if served != 1 || refused != 1 {
		t.Fatalf("%d served, %d refused; want one of each", served, refused)
	}
}

// lockedLog is a log sink safe for concurrent writes and reads.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTCPRelayCloseStopsAccepting: Close stops a relay whose listener is
// still open (Serve accepts on a copy of its descriptor, which closing the
// listener alone leaves open), and a Close before Serve makes Serve return.
func TestTCPRelayCloseStopsAccepting(t *testing.T) {
	server := listen(t)
	serve(t, server, echo)
	host := listen(t)
	r := &TCPRelay{Port: 80, Dialer: toAddr{addr: addrOf(server)}, Wait: time.Second, Logger: slog.New(slog.DiscardHandler)}
	done := make(chan error, 1)
	go func() { done <- r.Serve(context.Background(), host) }()
	c := dial(t, addrOf(host))
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("through the relay: %v", err)
	}
	c.Close()
	r.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return within 5s of Close")
	}
	if c, err := net.Dial("tcp", addrOf(host).String()); err == nil {
		c.Close()
		t.Fatal("the relay's port still takes connections after Close")
	}

	early := &TCPRelay{Port: 80, Dialer: toAddr{addr: addrOf(server)}, Logger: slog.New(slog.DiscardHandler)}
	early.Close()
	if err := early.Serve(context.Background(), listen(t)); err != nil {
		t.Fatalf("Serve after Close: %v", err)
	}
}
