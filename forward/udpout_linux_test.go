package forward

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// outboundUDP runs u.ServeFixed on a fresh socket on 127.0.0.1, relaying to
// to, and returns the socket's address and the end of Serve.
func outboundUDP(t *testing.T, u *UDPOutbound, to netip.AddrPort) (netip.AddrPort, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	conn := udpListen(t, netip.AddrPortFrom(loopback4, 0))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := u.ServeFixed(ctx, conn, to); err != nil {
			t.Errorf("ServeFixed: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("ServeFixed did not return within 10s of the end of its context")
		}
	})
	return udpAddrOf(conn), cancel, done
}

// hostSockets is a pool that gets sockets only when the test adds them.
func hostSockets(t *testing.T, n int) *SocketPool {
	t.Helper()
	p := &SocketPool{Wait: time.Minute}
	t.Cleanup(p.Close)
	addHostSockets(t, p, n)
	return p
}

func addHostSockets(t *testing.T, p *SocketPool, n int) {
	t.Helper()
	files, err := NewHostSockets(UDP4, n)
	if err != nil {
		t.Fatal(err)
	}
	p.Add(UDP4, files)
}

// say sends msg on c and returns the answer, waiting up to wait.
func say(c *net.UDPConn, msg string, wait time.Duration) (string, error) {
	b, err := exchange(c, []byte(msg), wait)
	return string(b), err
}

// receive returns the next datagram that arrives on c, waiting up to wait.
func receive(c *net.UDPConn, wait time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// Fault: a new flow whose host socket is slow to come (the pool is empty
// and waits for nsbind's parent) does not hold up the datagrams of a flow
// already open. Its own datagrams wait for it, up to outQueueLen, and go
// out in order once it is open.
func TestUDPOutboundSlowOpenDoesNotStall(t *testing.T) {
	to := netip.AddrPortFrom(loopback4, udpServer4(t, udpEcho))
	p := hostSockets(t, 1)
	u := &UDPOutbound{Pool: p, Logger: slog.New(slog.DiscardHandler), Stats: new(Stats)}
	relay, _, _ := outboundUDP(t, u, to)

	a := udpClient(t, relay)
	if got, err := say(a, "a1", 10*time.Second); err != nil || got != "a1" {
		t.Fatalf("first flow: %q, %v", got, err)
	}
	// The pool is empty now: b's flow waits for a socket.
	b := udpClient(t, relay)
	for i := range outQueueLen + 4 {
		if _, err := b.Write(fmt.Appendf(nil, "b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// The pool's wait is a minute; a few seconds mean a's datagram did
	// not wait for b's socket.
	if got, err := say(a, "a2", 5*time.Second); err != nil || got != "a2" {
		t.Fatalf("the open flow while another opens: %q, %v (its datagram waited for the other flow's host socket)", got, err)
	}
	addHostSockets(t, p, 1)
	for i := range outQueueLen {
		want := fmt.Sprintf("b%d", i)
		if got, err := receive(b, 10*time.Second); err != nil || got != want {
			t.Fatalf("queued datagram %d: %q, %v, want %q", i, got, err, want)
		}
	}
	// What came beyond the queue was dropped: the next answer is to a new
	// datagram.
	if got, err := say(b, "b-open", 10*time.Second); err != nil || got != "b-open" {
		t.Fatalf("after the queue: %q, %v, want \"b-open\"", got, err)
	}
	if n := u.Stats.Active.Load(); n != 2 {
		t.Errorf("%d flows active, want 2", n)
	}
}

// heldLog is a log handler that holds the goroutine logging msg until
// released, and says when one is held.
type heldLog struct {
	msg     string
	held    chan struct{} // closed when the first one is held
	release chan struct{}
	once    sync.Once
}

func (h *heldLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *heldLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *heldLog) WithGroup(string) slog.Handler            { return h }
func (h *heldLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.held) })
		<-h.release
	}
	return nil
}

// flowGoroutines counts the goroutines of outbound UDP flows.
func flowGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "forward.(*udpOutServer)") || strings.Contains(g, "forward.(*UDPOutbound).back") {
			n++
		}
	}
	return n
}

// Serve returns only once every flow goroutine it started has ended: one
// that is still closing its flow (held in its last log line) holds Serve
// back.
func TestUDPOutboundServeWaitsForFlows(t *testing.T) {
	to := netip.AddrPortFrom(loopback4, udpServer4(t, udpEcho))
	h := &heldLog{msg: "UDP flow closed", held: make(chan struct{}), release: make(chan struct{})}
	u := &UDPOutbound{Pool: hostSockets(t, 2), Logger: slog.New(h), Stats: new(Stats)}
	relay, cancel, done := outboundUDP(t, u, to)
	for _, msg := range []string{"a", "b"} {
		if got, err := say(udpClient(t, relay), msg, 10*time.Second); err != nil || got != msg {
			t.Fatalf("flow %s: %q, %v", msg, got, err)
		}
	}
	cancel()
	select {
	case <-done:
		close(h.release)
		t.Fatal("Serve returned before its flows' goroutines had closed them")
	case <-h.held:
	case <-time.After(10 * time.Second):
		close(h.release)
		t.Fatal("no flow closed within 10s of the end of Serve's context")
	}
	// A window for a Serve that does not wait to return in.
	select {
	case <-done:
		close(h.release)
		t.Fatal("Serve returned while a flow goroutine was still running")
	case <-time.After(200 * time.Millisecond):
	}
	close(h.release)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10s of its flows' end")
	}
	if n := flowGoroutines(); n != 0 {
		t.Errorf("%d flow goroutines left after Serve returned", n)
	}
	if n := u.Stats.Active.Load(); n != 0 {
		t.Errorf("%d flows active after Serve returned", n)
	}
}
