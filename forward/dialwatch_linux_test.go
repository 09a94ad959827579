package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stuckServer is a server that stopped accepting: a listener on 127.0.0.1
// with a backlog of 0 whose accept queue is full, so that the kernel drops
// every further SYN and a dial to it stays in SYN-SENT.
func stuckServer(t *testing.T) uint16 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(sa.(*unix.SockaddrInet4).Port)
	// Fill the accept queue (backlog 0 holds one).
	for range 2 {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	return port
}

// synSent counts the sockets of this network namespace in SYN-SENT to port
// on 127.0.0.1 (/proc/net/tcp: state 02).
func synSent(t *testing.T, port uint16) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	want := fmt.Sprintf("0100007F:%04X", port)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[2] == want && fields[3] == "02" {
			n++
		}
	}
	return n
}

// startLoopbackRelay relays a fresh host listener to port on loopback
// with LoopbackDialer, as --source-address loopback does.
func startLoopbackRelay(t *testing.T, port uint16, wait time.Duration) netip.AddrPort {
	t.Helper()
	host := listen(t)
	ctx, cancel := context.WithCancel(context.Background())
	r := &TCPRelay{Port: port, Dialer: LoopbackDialer{}, Wait: wait, Logger: slog.New(slog.DiscardHandler), Stats: new(Stats)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Serve(ctx, host)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of the end of its context")
		}
	})
	return addrOf(host)
}

// Fault: against a server that stopped accepting, the dial of the server
// is bounded by the relay's Wait (--connect-timeout): the client gets a
// reset soon after, not once the kernel gives up its SYN retries two
// minutes later.
func TestRelayDialToStuckServerIsBounded(t *testing.T) {
	port := stuckServer(t)
	relay := startLoopbackRelay(t, port, time.Second)
	c := dial(t, relay)
	waitFor(t, func() bool { return synSent(t, port) > 0 })
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client still waits %v after connecting: the dial of the server is not bounded", time.Since(start))
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the client waited %v, Wait is 1s", took)
	}
	waitFor(t, func() bool { return synSent(t, port) == 0 })
}

// Fault: clients that give up while the server does not accept leave no
// dial behind, even with a long Wait: once a client has gone (closed with
// nothing sent), its dial of the server is abandoned.
func TestRelayDialAbandonedWhenClientGoes(t *testing.T) {
	port := stuckServer(t)
	relay := startLoopbackRelay(t, port, time.Minute)
	const clients = 10
	var cs []*net.TCPConn
	for range clients {
		cs = append(cs, dial(t, relay))
	}
	waitFor(t, func() bool { return synSent(t, port) >= clients })
	// Each client holds its socket, the relay's accepted one and its dial.
	before := openFDs(t)
	for _, c := range cs {
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for synSent(t, port) > 0 || openFDs(t) > before-3*clients {
		if time.Now().After(deadline) {
			t.Fatalf("5s after their clients left (Wait is a minute): %d dials of the server in SYN-SENT, %d descriptors (%d before)",
				synSent(t, port), openFDs(t), before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
