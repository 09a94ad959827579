package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// udpExchange sends b on c and returns the reply, waiting at most d. There
// is no retry: on loopback the relay loses nothing at these rates.
func udpExchange(c *net.UDPConn, b []byte, d time.Duration) ([]byte, error) {
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// udpDial is a client socket connected to ap.
func udpDial(t *testing.T, ap netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startUDPEcho runs nsbind with a UDP echo server of kind (udpecho,
// udpecho4, udpecho6) on port 53 inside, published with kernel-chosen host
// ports, and waits until the server listens.
func startUDPEcho(t *testing.T, kind string, flags ...string) *nsbindRun {
	t.Helper()
	args := append(append([]string{"-p", "53:0/udp"}, flags...), "--", os.Args[0], "__server", kind, "53")
	r := startNsbind(t, args...)
	r.waitOutput("listening")
	return r
}

// Acceptance: a UDP echo server on port 53 inside; 20 clients × 50
// datagrams of mixed sizes up to 9000 bytes over 127.0.0.1 and ::1, each
// a request waiting for its reply: every reply is the client's own
// datagram and none is lost.
func TestUDPEchoManyClients(t *testing.T) {
	r := startUDPEcho(t, "udpecho")
	if len(r.ports) != 2 {
		t.Fatalf("ports file %+v, want 127.0.0.1 and ::1", r.ports)
	}
	for _, p := range r.ports {
		if p.Proto != "udp" || p.InsidePort != 53 || p.HostPort == 0 {
			t.Fatalf("ports file entry %+v, want udp, inside 53, a host port", p)
		}
	}
	const clients, rounds = 20, 50
	sizes := []int{9000, 1, 512, 1472, 4096, 8, 1500, 8999, 100, 65}
	var wg sync.WaitGroup
	errs := make(chan error, 2*clients)
	for _, family := range []int{4, 6} {
		a := r.addr(family)
		for i := range clients {
			c := udpDial(t, a)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range rounds {
					want := make([]byte, sizes[(i+j)%len(sizes)])
					rand.Read(want)
					if len(want) >= 8 {
						binary.BigEndian.PutUint32(want, uint32(family*1000+i))
						binary.BigEndian.PutUint32(want[4:], uint32(j))
					}
					got, err := udpExchange(c, want, 5*time.Second)
					if err != nil {
						errs <- fmt.Errorf("IPv%d client %d datagram %d (%d bytes): %w", family, i, j, len(want), err)
						return
					}
					if !bytes.Equal(got, want) {
						errs <- fmt.Errorf("IPv%d client %d datagram %d: got %d bytes that are not the %d it sent", family, i, j, len(got), len(want))
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Acceptance: the largest datagram of each family round-trips unchanged:
// 65507 bytes over IPv4, 65527 over IPv6.
func TestUDPLargestDatagram(t *testing.T) {
	r := startUDPEcho(t, "udpecho")
	for _, tt := range []struct{ family, size int }{{4, 65507}, {6, 65527}} {
		c := udpDial(t, r.addr(tt.family))
		want := make([]byte, tt.size)
		rand.Read(want)
		got, err := udpExchange(c, want, 5*time.Second)
		if err != nil {
			t.Fatalf("%d bytes over IPv%d: %v", tt.size, tt.family, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%d bytes over IPv%d came back as %d different bytes", tt.size, tt.family, len(got))
		}
	}
}

// A client of either family reaches a UDP server that listens on the other
// family only.
func TestUDPFamilyFallback(t *testing.T) {
	for _, tt := range []struct {
		kind   string
		family int
	}{{"udpecho4", 6}, {"udpecho6", 4}} {
		r := startUDPEcho(t, tt.kind)
		c := udpDial(t, r.addr(tt.family))
		for i := range 3 {
			want := []byte(fmt.Sprintf("%s over IPv%d #%d", tt.kind, tt.family, i))
			got, err := udpExchange(c, want, 5*time.Second)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("IPv%d client of a %s server: %q, %v", tt.family, tt.kind, got, err)
			}
		}
	}
}

// openFDs counts the open descriptors of pid.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// Acceptance: 10,000 clients with distinct source ports against
// --udp-max-flows 1000: the helper (which holds the flows' sockets) never
// has more than the bound plus a constant of descriptors open, every client
// is answered, and a new client is answered afterwards.
func TestUDPFlowsBounded(t *testing.T) {
	// It counts the helper's descriptors; with --direct the flows of the
	// IPv4 socket the server did not take are in nsbind's parent.
	skipInDirectMode(t)
	const maxFlows, clients, workers = 1000, 10000, 16
	r := startUDPEcho(t, "udpecho", "--udp-max-flows", strconv.Itoa(maxFlows))
	helper := descendants(r.cmd.Process.Pid)[0]
	a := r.addr(4)
	if _, err := udpExchange(udpDial(t, a), []byte("warm up"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	base, parentBase := openFDs(t, helper), openFDs(t, r.cmd.Process.Pid)
	// The constant: descriptors the Go runtime or the relay may open on
	// the way (epoll, pipes), far below the bound.
	limit := base + maxFlows + 32

	var (
		mu      sync.Mutex
		used    = make(map[uint16]bool)
		failure error
	)
	// newClient opens a socket on a source port no earlier client had.
	newClient := func() (*net.UDPConn, error) {
		for {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(a))
			if err != nil {
				return nil, err
			}
			port := uint16(c.LocalAddr().(*net.UDPAddr).Port)
			mu.Lock()
			fresh := !used[port]
			used[port] = true
			mu.Unlock()
			if fresh {
				return c, nil
			}
			c.Close()
		}
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := newClient()
				if err == nil {
					want := []byte("client " + strconv.Itoa(i))
					var got []byte
					got, err = udpExchange(c, want, 5*time.Second)
					if err == nil && !bytes.Equal(got, want) {
						err = fmt.Errorf("client %d got %q", i, got)
					}
					c.Close()
				}
				if err != nil {
					mu.Lock()
					if failure == nil {
						failure = fmt.Errorf("client %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	peak := 0
	for i := range clients {
		next <- i
		if i%50 == 0 {
			peak = max(peak, openFDs(t, helper))
		}
	}
	close(next)
	wg.Wait()
	peak = max(peak, openFDs(t, helper))
	if failure != nil {
		t.Fatal(failure)
	}
	if len(used) < clients {
		t.Fatalf("only %d distinct source ports", len(used))
	}
	t.Logf("helper descriptors: %d before, at most %d during %d clients (bound %d flows)", base, peak, clients, maxFlows)
	if peak > limit {
		t.Errorf("the helper had %d descriptors open, more than %d (%d before + %d flows + 32)", peak, limit, base, maxFlows)
	}
	if n := openFDs(t, r.cmd.Process.Pid); n > parentBase+8 {
		t.Errorf("nsbind's parent process has %d descriptors open, %d before", n, parentBase)
	}
	if peak < base+maxFlows/2 {
		t.Errorf("the helper had at most %d descriptors open: the flows did not hold sockets as expected", peak)
	}
	c := udpDial(t, a)
	if got, err := udpExchange(c, []byte("after the flood"), 5*time.Second); err != nil || string(got) != "after the flood" {
		t.Fatalf("a new client after the flood: %q, %v", got, err)
	}
}

// Bad UDP flags fail with 125 before anything starts.
func TestUDPBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		says string
	}{
		{[]string{"run", "--udp-timeout", "0s", "true"}, "--udp-timeout must be positive"},
		{[]string{"run", "--udp-timeout", "soon", "true"}, "--udp-timeout"},
		{[]string{"run", "--udp-max-flows", "0", "true"}, "--udp-max-flows must be at least 1"},
	} {
		code, _, stderr := runInProcess(t, tt.args...)
		if code != 125 || !strings.Contains(stderr, tt.says) {
			t.Errorf("nsbind %q: exit %d, stderr %q; want 125 saying %q", tt.args, code, stderr, tt.says)
		}
	}
}

// bannerOf reads what the banner server at ap sends.
func bannerOf(ap netip.AddrPort) (string, error) {
	c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// freeRange finds n consecutive TCP ports free on 127.0.0.1 and ::1 below
// the kernel's ephemeral range, so no client socket takes one meanwhile.
func freeRange(t *testing.T, n int, skip map[int]bool) int {
	t.Helper()
	for base := 20000 + os.Getpid()%5000; base < 32000; base += n + 7 {
		if skip[base] {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			for _, host := range []string{"127.0.0.1", "::1"} {
				ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
				if err != nil {
					ok = false
					break
				}
				ln.Close()
			}
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free range of host ports")
	return 0
}

// Acceptance: a range maps port by port: inside 8000-8002 <- host P..P+2,
// three servers inside, each reached on 127.0.0.1 and ::1 through its own
// host port.
func TestPortRange(t *testing.T) {
	tried := make(map[int]bool)
	var (
		r    *nsbindRun
		base int
	)
	for range 5 {
		base = freeRange(t, 3, tried)
		tried[base] = true
		script := fmt.Sprintf("T=%s; $T __server banner 8000 & $T __server banner 8001 & exec $T __server banner 8002", os.Args[0])
		r = startNsbind(t, "-p", fmt.Sprintf("8000-8002:%d-%d", base, base+2), "--", "sh", "-c", script)
		if len(r.ports) > 0 {
			break
		}
		// Another program took a port meanwhile: try another range.
		if code := r.wait(15 * time.Second); code != 125 || !strings.Contains(r.stderr.String(), "already in use") {
			t.Fatalf("exit %d:\n%s", code, r.stderr.String())
		}
	}
	if len(r.ports) != 6 {
		t.Fatalf("ports file %+v, want 3 ports × 2 addresses", r.ports)
	}
	for _, p := range r.ports {
		if int(p.HostPort)-base != int(p.InsidePort)-8000 {
			t.Errorf("ports file maps host %d to inside %d", p.HostPort, p.InsidePort)
		}
	}
	for i := range 3 {
		for _, host := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
			ap := netip.AddrPortFrom(host, uint16(base+i))
			got, err := bannerOf(ap)
			if err != nil || got != strconv.Itoa(8000+i) {
				t.Errorf("host %s: %q, %v; want the server on inside port %d", ap, got, err, 8000+i)
			}
		}
	}
}

// Acceptance: -p 80:[::]:PORT publishes on every address of both families:
// it answers on 127.0.0.1 and ::1.
func TestPublishDualStack(t *testing.T) {
	r := startNsbind(t, "-p", "80:[::]:0", "--", os.Args[0], "__server", "banner", "80")
	if len(r.ports) != 1 || r.ports[0].HostIP != "::" {
		t.Fatalf("ports file %+v, want one socket on ::", r.ports)
	}
	port := r.ports[0].HostPort
	if !strings.Contains(r.stderr.String(), fmt.Sprintf("[::]:%d → :80/tcp", port)) {
		t.Errorf("no start line for [::]:%d:\n%s", port, r.stderr.String())
	}
	for _, host := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
		ap := netip.AddrPortFrom(host, port)
		if got, err := bannerOf(ap); err != nil || got != "80" {
			t.Errorf("%s: %q, %v; want the server's banner", ap, got, err)
		}
	}
}
