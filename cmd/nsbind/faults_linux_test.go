package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultServer runs the servers of the fault tests on [::]:PORT; each
// prints "listening" once it listens.
//
//	flood PORT          writes a byte pattern to each connection until a write
//	                    stalls for 2s (or 256 MiB are out), prints "stalled N CLIENT"
//	                    and closes it
//	farewell PORT SIZE  answers "ready" to a line; on SIGTERM it writes SIZE
//	                    pattern bytes to every open connection, closes them
//	                    and exits 42
//	sink PORT N         reads 1 MiB of each connection, then nothing more; when
//	                    N connections have sent theirs it prints "crashing"
//	                    and dies of SIGKILL, their data unread
//	echo1 PORT          an echo that needs one descriptor per connection (no
//	                    splice pipes) and outlasts EMFILE, for a small limit
func faultServer(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: __server flood|farewell|sink PORT [ARG]")
		return 2
	}
	ln, err := net.Listen("tcp", ":"+args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening")
	var arg int64
	if len(args) > 2 {
		arg, _ = strconv.ParseInt(args[2], 10, 64)
	}
	switch args[0] {
	case "echo1":
		for {
			c, err := ln.Accept()
			if errors.Is(err, syscall.EMFILE) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if err != nil {
				return 1
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 32<<10)
				// Plain reads and writes: io.Copy between two sockets
				// would splice, with a pipe per connection.
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						c.(*net.TCPConn).CloseWrite()
						return
					}
				}
			}()
		}
	case "flood":
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() {
				defer c.Close()
				n, _ := writePattern(c, 256<<20, 2*time.Second)
				// Whose: a stray client of another test, on a port
				// number that was its once, may come and go too.
				fmt.Printf("stalled %d %s\n", n, c.RemoteAddr())
			}()
		}
	case "farewell":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
						c.Close()
						return
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
					c.Write([]byte("ready\n"))
				}()
			}
		}()
		<-sigs
		fmt.Println("got SIGTERM")
		mu.Lock()
		defer mu.Unlock()
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				writePattern(c, arg, 0)
				c.Close()
			}()
		}
		wg.Wait()
		return 42
	case "sink":
		var fed atomic.Int64
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() {
				if _, err := io.CopyN(io.Discard, c, 1<<20); err != nil {
					return
				}
				if fed.Add(1) == arg {
					fmt.Println("crashing")
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
				select {} // hold c, unread
			}()
		}
	}
	fmt.Fprintf(os.Stderr, "unknown fault server %q\n", args[0])
	return 2
}

// patternByte is byte i of the stream the fault servers write.
func patternByte(i int64) byte { return byte(i % 251) }

// writePattern writes n bytes of the pattern to c, each write bounded by
// stall when it is not zero, and returns how many it wrote.
func writePattern(c net.Conn, n int64, stall time.Duration) (int64, error) {
	chunk := make([]byte, 64<<10)
	var off int64
	for off < n {
		k := min(int64(len(chunk)), n-off)
		for i := range k {
			chunk[i] = patternByte(off + i)
		}
		if stall > 0 {
			c.SetWriteDeadline(time.Now().Add(stall))
		}
		w, err := c.Write(chunk[:k])
		off += int64(w)
		if err != nil {
			return off, err
		}
	}
	return off, nil
}

// readPattern reads c to its end, checking the pattern, and returns how
// many bytes came.
func readPattern(c net.Conn) (int64, error) {
	buf := make([]byte, 64<<10)
	var got int64
	for {
		k, err := c.Read(buf)
		for i := range k {
			if buf[i] != patternByte(got+int64(i)) {
				return got, fmt.Errorf("byte %d differs from what the server sent", got+int64(i))
			}
		}
		got += int64(k)
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
	}
}

// helperOf is the pid of nsbind's helper: nsbind's child, and the parent of
// the server. (Found by its place in the tree, not by name: in the tests the
// helper and the test's own servers are the same binary.)
func helperOf(t *testing.T, r *nsbindRun) int {
	t.Helper()
	var pid int
	waitUntil(t, 10*time.Second, func() bool {
		for _, c := range children(r.cmd.Process.Pid) {
			if len(children(c)) > 0 {
				pid = c
				return true
			}
		}
		return false
	}, func() string { return "nsbind has no helper with a server below it" })
	return pid
}

// children lists the child processes of pid.
func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// fdCount counts the descriptors of pid: of that process alone, not of its
// children (the helper's server has a descriptor table of its own).
func fdCount(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the descriptors of %d: %v", pid, err)
	}
	return len(fds)
}

// fileLimit is the soft and hard RLIMIT_NOFILE of pid.
func fileLimit(t *testing.T, pid int) (soft, hard int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			soft, _ = strconv.Atoi(f[0])
			hard, _ = strconv.Atoi(f[1])
			return soft, hard
		}
	}
	t.Fatalf("no open files limit for %d", pid)
	return 0, 0
}

// rssKiB is the resident memory of pid.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	n, _ := strconv.Atoi(strings.TrimSuffix(statusField(t, pid, "VmRSS"), " kB"))
	return n
}

// holdEcho connects to ap, has one byte echoed (so the connection reaches
// the server), counts itself served, and stays open until release closes.
func holdEcho(ap netip.AddrPort, served *atomic.Int32, release <-chan struct{}) error {
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(120 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return fmt.Errorf("waiting for the echo: %w", err)
	}
	served.Add(1)
	<-release
	return nil
}

// shortEcho is one short connection: a byte there and back, then close.
func shortEcho(ap netip.AddrPort) error {
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

// nsbind raises its own soft descriptor limit to the hard limit (less
// one: Go's runtime does it, and a setrlimit of nsbind's own would hand the
// raised limit on to the server), while the server keeps the user's soft
// limit.
func TestFileLimit(t *testing.T) {
	prlimit := needProgram(t, "prlimit")
	r := startNsbindVia(t, []string{prlimit, "--nofile=100:200", "--"}, "--", "sleep", "1000")
	sleep := processNamed(t, r.cmd.Process.Pid, "sleep")
	for _, p := range []struct {
		what string
		pid  int
	}{{"nsbind", r.cmd.Process.Pid}, {"the helper", helperOf(t, r)}} {
		if soft, hard := fileLimit(t, p.pid); hard != 200 || soft < hard-1 {
			t.Errorf("%s has soft limit %d, hard %d: want the soft limit raised to the hard 200", p.what, soft, hard)
		}
	}
	if soft, hard := fileLimit(t, sleep); soft != 100 || hard != 200 {
		t.Errorf("the server has limits %d/%d, want the user's 100/200", soft, hard)
	}
}

// Fault: descriptor exhaustion. Under a hard limit of 64 descriptors the
// helper (about 14 at rest, then 2 per connection and 2 per running
// splice) can relay a handful of connections and hold at most 50 accepted
// ones; 60 clients connect at once and stay. The helper runs out: accept
// fails with EMFILE and backs off (those clients wait in the listen
// backlog), and of the connections accepted in the burst one waits for a
// descriptor to dial the server and the others are refused (their clients
// connect again, as clients do). Nothing crashes, and every client is
// served once the first ones leave. Then a new client is served too.
func TestFaultFDExhaustion(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	prlimit := needProgram(t, "prlimit")
	const limit, clients = 64, 60
	r := startNsbindVia(t, []string{prlimit, fmt.Sprintf("--nofile=%d:%d", limit, limit), "--"},
		// --isolated: the host sockets kept for outbound connections would
		// take a third of these 64 descriptors.
		"--isolated", "--log-level", "debug", "--connect-timeout", "60s", "-p", "7:0", "--", os.Args[0], "__server", "echo1", "7")
	a := r.addr(4)
	helper := helperOf(t, r)
	release := make(chan struct{})
	var served, refused atomic.Int32
	errs := make(chan error, clients)
	for range clients {
		go func() {
			for {
				err := holdEcho(a, &served, release)
				if !errors.Is(err, syscall.ECONNRESET) {
					errs <- err
					return
				}
				refused.Add(1)
			}
		}()
	}
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	waitUntil(t, 30*time.Second, func() bool {
		return strings.Contains(r.stderr.String(), "too many open files")
	}, func() string {
		return fmt.Sprintf("the helper (%d descriptors) did not run out; %d clients served", fdCount(t, helper), served.Load())
	})
	if n := served.Load(); n >= clients {
		t.Fatalf("all %d clients were served with %d descriptors: the limit was not reached", n, limit)
	}
	if !alive(helper) {
		t.Fatal("the helper died when it ran out of descriptors")
	}
	t.Logf("out of descriptors with %d clients served, %d waiting, %d refusals so far", served.Load(), clients-int(served.Load()), refused.Load())
	close(release)
	for range clients {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatalf("a client was not served once descriptors were free: %v", err)
			}
		case <-time.After(90 * time.Second):
			t.Fatalf("only %d of %d clients served 90s after descriptors were free", served.Load(), clients)
		}
	}
	t.Logf("%d refusals in all; the helper's log says:\n%s", refused.Load(), exhaustionLines(r.stderr.String()))
	if err := echoThrough(a, 1<<20); err != nil {
		t.Fatalf("a new client after the exhaustion: %v", err)
	}
	if code := r.stop(15 * time.Second); code != 143 {
		t.Fatalf("exit %d, want the server's 143", code)
	}
}

// exhaustionLines are the lines of a debug log about running out of
// descriptors, the first of each kind.
func exhaustionLines(log string) string {
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, "too many open files") {
			continue
		}
		kind := line
		if i := strings.Index(line, "="); i > 0 {
			kind = line[:strings.LastIndex(line[:i], " ")]
		}
		if !seen[kind] {
			seen[kind] = true
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// Fault: 2,000 idle connections held open through the relay do not keep a
// new client from being served, and stay usable. An idle connection costs
// the helper its two sockets and nothing more (the relay takes a splice
// pipe only while data passes): the helper holds at most two descriptors
// per idle connection above what it held before, with a small slack for
// the pipes its pool keeps.
func TestFaultIdleConnections(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	const idle, slack = 2000, 16
	r := startNsbind(t, "-p", "7:0", "--", os.Args[0], "__server", "echo", "7")
	a := r.addr(4)
	helper := helperOf(t, r)
	// One connection first: what the helper holds at rest includes the
	// pipes its pool keeps once a transfer has run.
	if err := shortEcho(a); err != nil {
		t.Fatal(err)
	}
	before := fdCount(t, helper)
	conns := make([]*net.TCPConn, 0, idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	b := make([]byte, 1)
	for range idle {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(a))
		if err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		// A byte there and back: the connection reaches the server.
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte{'i'}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatalf("idle connection %d: %v", len(conns), err)
		}
		c.SetDeadline(time.Time{})
	}
	n, sockets := fdCount(t, helper), socketCount(t, helper)
	if n > before+2*idle+slack {
		t.Fatalf("the helper holds %d descriptors for %d idle connections, %d before: more than two per connection (%d, with a slack of %d)",
			n, idle, before, before+2*idle+slack, slack)
	}
	// Not a bound the relay promises, a check of the measurement: the
	// connections are there, in the process counted.
	if sockets < 2*idle {
		t.Fatalf("the helper holds %d sockets for %d relayed connections: not the process that relays them?", sockets, idle)
	}
	t.Logf("the helper holds %d descriptors (%d sockets) and %d KiB for %d idle connections, %d descriptors before", n, sockets, rssKiB(t, helper), idle, before)
	if err := echoThrough(a, 4<<20); err != nil {
		t.Fatalf("a new client with %d idle connections open: %v", idle, err)
	}
	if err := echoThrough(r.addr(6), 4<<20); err != nil {
		t.Fatalf("a new IPv6 client with %d idle connections open: %v", idle, err)
	}
	for i := 0; i < idle; i += 97 {
		c := conns[i]
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write([]byte{'j'}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil || b[0] != 'j' {
			t.Fatalf("idle connection %d no longer works: %q %v", i, b, err)
		}
	}
}

// Fault: a client that stops reading gets back-pressure. The server
// writes until a write blocks for 2s; that happens within the kernel's
// socket buffers (tens of MiB), with the helper's memory flat, instead of
// nsbind buffering without bound. Then the client reads every byte the
// server wrote, intact.
func TestFaultSlowReader(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	r := startNsbind(t, "-p", "7:0", "--", os.Args[0], "__server", "flood", "7")
	helper := helperOf(t, r)
	rssBefore := rssKiB(t, helper)
	c := dial4(t, r.addr(4))
	c.SetDeadline(time.Now().Add(120 * time.Second))
	var wrote int64
	// The server sees the client's own address (--source-address client).
	mine := " " + c.LocalAddr().String()
	waitUntil(t, 120*time.Second, func() bool {
		for _, line := range strings.Split(r.stdout.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "stalled "); ok && strings.HasSuffix(v, mine) {
				wrote, _ = strconv.ParseInt(strings.TrimSuffix(v, mine), 10, 64)
				return true
			}
		}
		return false
	}, func() string { return "the server's writes to this client never stalled:\n" + r.stdout.String() })
	rssAfter := rssKiB(t, helper)
	t.Logf("the server stalled after %d KiB; helper RSS %d KiB → %d KiB", wrote>>10, rssBefore, rssAfter)
	if wrote >= 64<<20 {
		t.Fatalf("the server wrote %d MiB to a client that reads nothing: no back-pressure", wrote>>20)
	}
	if grew := rssAfter - rssBefore; grew > 16<<10 {
		t.Fatalf("the helper grew by %d KiB holding a stalled stream", grew)
	}
	got, err := readPattern(c)
	if err != nil {
		t.Fatalf("after %d bytes: %v", got, err)
	}
	if got != wrote {
		t.Fatalf("the client got %d bytes, the server wrote %d", got, wrote)
	}
}

func dial4(t *testing.T, ap netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Fault: the server crashes (SIGKILL) while clients are sending: each
// client gets a reset, not a clean end, and nsbind exits with the
// server's status, 128+9.
func TestFaultServerCrash(t *testing.T) {
	const clients = 4
	r := startNsbind(t, "-p", "7:0", "--", os.Args[0], "__server", "sink", "7", strconv.Itoa(clients))
	a := r.addr(4)
	errs := make(chan error, clients)
	for range clients {
		go func() {
			c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(a))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			chunk := make([]byte, 1<<20)
			for range 256 {
				if _, err := c.Write(chunk); err != nil {
					errs <- err
					return
				}
			}
			_, err = io.ReadAll(c)
			errs <- fmt.Errorf("256 MiB went out and the read ended with %v", err)
		}()
	}
	for range clients {
		err := <-errs
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Errorf("client: %v, want a reset", err)
		}
	}
	if code := r.wait(15 * time.Second); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit %d, want the server's %d", code, 128+int(syscall.SIGKILL))
	}
	if !strings.Contains(r.stdout.String(), "crashing") {
		t.Fatalf("the server did not crash as planned:\n%s", r.stdout.String())
	}
}

// Fault: SIGTERM while connections are open. The server gets it first,
// and answers every open connection with 32 MiB before it exits: the relay
// keeps delivering all of it, also what is still in flight when the server
// has exited, and nsbind exits with the server's status.
func TestFaultSIGTERMDrains(t *testing.T) {
	const clients, size = 4, 32 << 20
	r := startNsbind(t, "-p", "7:0", "--", os.Args[0], "__server", "farewell", "7", strconv.Itoa(size))
	a := r.addr(4)
	var conns []*net.TCPConn
	for range clients {
		c := dial4(t, a)
		c.SetDeadline(time.Now().Add(120 * time.Second))
		br := bufio.NewReader(c)
		if _, err := c.Write([]byte("hi\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "ready\n" {
			t.Fatalf("greeting %q, %v", line, err)
		}
		conns = append(conns, c)
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	var wg sync.WaitGroup
	got := make([]int64, clients)
	errs := make([]error, clients)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = readPattern(c)
		}()
	}
	wg.Wait()
	for i := range clients {
		if errs[i] != nil || got[i] != size {
			t.Errorf("client %d got %d of %d bytes: %v", i, got[i], size, errs[i])
		}
	}
	if code := r.wait(30 * time.Second); code != 42 {
		t.Fatalf("exit %d, want the server's 42", code)
	}
	if !strings.Contains(r.stdout.String(), "got SIGTERM") {
		t.Fatalf("the server did not get SIGTERM:\n%s", r.stdout.String())
	}
}

// Fault: 100,000 short connections leave no descriptor behind in the
// helper: its sockets are back to what they were before, and its other
// descriptors too, but for the relay's pool of splice pipes, which keeps
// the pipes of finished transfers for the next ones: at most one per
// direction of the connections that ran at once (the workers, and the one
// before them), independent of the number of connections. The count is the
// helper's own descriptors; the test's echo server, below it, is a process
// of its own and not counted.
func TestFaultNoDescriptorLeak(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	const conns, workers = 100_000, 8
	// --isolated: the pool of host sockets for outbound connections would
	// count among the helper's descriptors.
	r := startNsbind(t, "--isolated", "-p", "7:0", "--", os.Args[0], "__server", "echo", "7")
	a := r.addr(4)
	helper := helperOf(t, r)
	if err := shortEcho(a); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, func() bool { return fdCount(t, helper) <= 16 },
		func() string { return fmt.Sprintf("the helper holds %d descriptors at rest", fdCount(t, helper)) })
	before, socketsBefore := fdCount(t, helper), socketCount(t, helper)
	var next atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for next.Add(1) <= conns {
				if err := shortEcho(a); err != nil {
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
	pooled := 2 * 2 * (workers + 1)
	waitUntil(t, 30*time.Second, func() bool {
		return socketCount(t, helper) <= socketsBefore && fdCount(t, helper) <= before+pooled
	}, func() string {
		return fmt.Sprintf("the helper holds %d descriptors (%d sockets) after %d connections, %d (%d) before",
			fdCount(t, helper), socketCount(t, helper), conns, before, socketsBefore)
	})
	t.Logf("the helper holds %d descriptors (%d sockets) after %d connections, %d (%d) before",
		fdCount(t, helper), socketCount(t, helper), conns, before, socketsBefore)
}

// socketCount counts the sockets among the descriptors of pid.
func socketCount(t *testing.T, pid int) int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("reading the descriptors of %d: %v", pid, err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink(dir + "/" + fd.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// --stats prints the connections and bytes of each published host socket
// when the server ends, and debug logs carry them too.
func TestStatsFlag(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	r := startNsbind(t, "--stats", "--log-level", "debug", "-p", "7:0", "--", os.Args[0], "__server", "echo", "7")
	a4, a6 := r.addr(4), r.addr(6)
	for _, n := range []int{1000, 2000, 3000} {
		if err := echoThrough(a4, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := echoThrough(a6, 500); err != nil {
		t.Fatal(err)
	}
	r.stop(15 * time.Second)
	stderr := r.stderr.String()
	for _, want := range []string{
		fmt.Sprintf("nsbind: %s → :7/tcp: 3 connections, 0 failed, 6000 bytes in, 6000 bytes out\n", a4),
		fmt.Sprintf("nsbind: %s → :7/tcp: 1 connection, 0 failed, 500 bytes in, 500 bytes out\n", a6),
		fmt.Sprintf("nsbind: debug: port stats host=%s inside=7 proto=tcp conns=3", a4),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q in:\n%s", want, stderr)
		}
	}
	// Without --stats, no counters.
	code, _, stderr := runNsbind(t, "run", "-p", "7:0", "--", "true")
	if code != 0 || strings.Contains(stderr, "connections") {
		t.Errorf("exit %d, stderr without --stats:\n%s", code, stderr)
	}
}
