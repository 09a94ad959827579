package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsbind's own messages never end or hold up a run. These tests give it a
// stderr that is closed or that nobody reads, as `2>&1 | head -1` or a
// stuck log collector would, and a --ports-file that is not a file.

// runWithStderr runs nsbind ARGS with stderr the pipe end w, and waits
// up to d for it to exit.
func runWithStderr(t *testing.T, w *os.File, d time.Duration, args ...string) int {
	t.Helper()
	requireUserns(t)
	cmd := nsbindCmd(args...)
	cmd.Stderr = w
	done := startCmd(t, cmd)
	w.Close()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("nsbind %q did not exit within %v", args, d)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return cmd.ProcessState.ExitCode()
}

// Fault: nsbind's stderr closes while the server runs. Writing its lines
// then fails (EPIPE), and nothing else: the server runs to its end and
// nsbind exits with its status (it used to die of SIGPIPE, 141, and take
// the server with it).
func TestClosedStderrKeepsRun(t *testing.T) {
	for _, tt := range []struct {
		name string
		// lines is how many lines of stderr are read before it closes.
		lines int
		args  []string
	}{
		{"closed from the start", 0, []string{"-p", "80:0"}},
		// As `2>&1 | head -1`: the stats come after head has gone.
		{"closed after the first line", 1, []string{"--stats", "-p", "80:0"}},
		{"quiet with stats", 0, []string{"-q", "--stats", "-p", "80:0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			read := make(chan struct{})
			go func() {
				defer close(read)
				defer pr.Close()
				sc := bufio.NewScanner(pr)
				for range tt.lines {
					sc.Scan()
				}
			}()
			if tt.lines == 0 {
				<-read
			}
			args := append(append([]string{"run"}, tt.args...), "--", "sh", "-c", "sleep 1; exit 7")
			if code := runWithStderr(t, pw, 30*time.Second, args...); code != 7 {
				t.Fatalf("exit %d, want the server's 7", code)
			}
			<-read
		})
	}
}

// echoWithin is one short connection through ap, a byte there and back,
// all within d.
func echoWithin(ap netip.AddrPort, d time.Duration) error {
	c, err := net.DialTimeout("tcp", ap.String(), d)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return err
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return err
	}
	return nil
}

// readPortsFile waits up to 15s for nsbind to write the ports file at
// path, or to end (done closed).
func readPortsFile(t *testing.T, path string, done <-chan struct{}) []portEntry {
	t.Helper()
	var ports []portEntry
	waitUntil(t, 15*time.Second, func() bool {
		select {
		case <-done:
			t.Fatal("nsbind ended before writing its ports file")
		default:
		}
		b, err := os.ReadFile(path)
		return err == nil && json.Unmarshal(b, &ports) == nil
	}, func() string { return "no ports file" })
	return ports
}

// Fault: with --log-level debug and a stderr nobody reads (a pipe, made
// as small as the kernel allows, that fills after a few lines), every
// connection is still relayed: the lines that do not fit are dropped.
// Then SIGTERM ends the whole run, and the port closes. (The helper used to
// block in its logger: no connection got through after the pipe was full,
// and nsbind kept the port after the server was gone.)
func TestStalledStderrDoesNotStallRelay(t *testing.T) {
	requireUserns(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close() // never read
	if _, err := unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 4096); err != nil {
		t.Logf("pipe size: %v", err)
	}
	portsFile := filepath.Join(t.TempDir(), "ports.json")
	cmd := nsbindCmd("run", "--ports-file", portsFile, "--log-level", "debug", "-p", "7:0", "--",
		os.Args[0], "__server", "echo4", "7")
	cmd.Stderr = pw
	done := startCmd(t, cmd)
	pw.Close()
	ports := readPortsFile(t, portsFile, done)
	var a netip.AddrPort
	for _, p := range ports {
		if ip := netip.MustParseAddr(p.HostIP); ip.Is4() {
			a = netip.AddrPortFrom(ip, p.HostPort)
		}
	}
	const conns = 200
	for i := range conns {
		if err := echoWithin(a, 10*time.Second); err != nil {
			t.Fatalf("connection %d of %d: %v", i+1, conns, err)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("nsbind did not exit within 15s of SIGTERM (port %s open: %v)", a, !refused(a))
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.ExitStatus() != 143 {
		t.Errorf("exit %v, want the server's 143", cmd.ProcessState)
	}
	if !refused(a) {
		t.Errorf("%s still accepts after nsbind exited", a)
	}
}

// --ports-file is there before the server starts, with this run's ports
// (not an earlier run's), and gone once nsbind exits.
func TestPortsFileBeforeServerStarts(t *testing.T) {
	pf := filepath.Join(serverTempDir(t), "ports.json")
	if err := os.WriteFile(pf, []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The server exits 3 if it finds the file with a port in it.
	code, _, stderr := runNsbind(t, "run", "-q", "--ports-file", pf, "-p", "80:0", "--",
		"sh", "-c", `grep -q '"host_port"' "$0" && exit 3; cat "$0"; exit 4`, pf)
	if code != 3 {
		t.Fatalf("exit %d, want 3: the server did not find the ports file when it started\n%s", code, stderr)
	}
	if _, err := os.Lstat(pf); !os.IsNotExist(err) {
		t.Fatalf("the ports file is still there after the run: %v", err)
	}
}

// A ports file that cannot be written stops the run before the server
// starts, with 125 and why (it used to be logged, and the run went on).
func TestPortsFileWriteErrorStops(t *testing.T) {
	dir := t.TempDir()
	mark := filepath.Join(dir, "started")
	code, _, stderr := runNsbind(t, "run", "--ports-file", filepath.Join(dir, "missing", "ports.json"), "-p", "80:0", "--",
		"touch", mark)
	if code != 125 || !strings.Contains(stderr, "--ports-file") {
		t.Fatalf("exit %d, want 125 with a line about --ports-file:\n%s", code, stderr)
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the server started although the ports file could not be written")
	}
}

// Only a regular file (or none) is replaced: a symlink, a directory, a
// FIFO and, as root, a device stay what they are, and the run stops with
// why. (The rename used to replace them: --ports-file /dev/null as root
// put a file in place of the device.)
func TestPortsFileOnlyRegular(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(string) error{
		"symlink":   func(p string) error { return os.Symlink(target, p) },
		"directory": func(p string) error { return os.Mkdir(p, 0o755) },
		"fifo":      func(p string) error { return unix.Mkfifo(p, 0o644) },
	}
	if os.Getuid() == 0 {
		cases["device"] = func(p string) error {
			return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) // like /dev/null
		}
	}
	for name, create := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, name)
			if err := create(p); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(p)
			code, _, stderr := runNsbind(t, "run", "--ports-file", p, "-p", "80:0", "--", "true")
			if code != 125 || !strings.Contains(stderr, "not a regular file") {
				t.Fatalf("exit %d, want 125 saying it is not a regular file:\n%s", code, stderr)
			}
			after, err := os.Lstat(p)
			if err != nil || after.Mode().Type() != before.Mode().Type() || !os.SameFile(before, after) {
				t.Fatalf("%s was replaced: %v, %v", p, after, err)
			}
			if b, _ := os.ReadFile(target); string(b) != "keep\n" {
				t.Fatalf("the symlink's target was written: %q", b)
			}
		})
	}
}

// Validation: values that would make the run useless or hang it are
// refused at once, with what to do.
func TestRunRefusesBadInputs(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "resolv.fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		says string
	}{
		// The relay answered no datagram with 1ns.
		{"udp timeout 1ns", []string{"--udp-timeout", "1ns", "-p", "53:0/udp"}, "--udp-timeout 1ns is too short"},
		{"udp timeout under a second", []string{"--udp-timeout", "500ms"}, "at least 1s"},
		// Reading its nameservers used to wait for a writer forever.
		{"resolv-conf fifo", []string{"--resolv-conf", fifo}, "not a regular file"},
		{"multicast host address", []string{"-p", "53:224.0.0.251:5353/udp"}, "multicast group"},
		{"broadcast host address", []string{"-p", "53:255.255.255.255:5353/udp"}, "broadcast address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"run"}, tt.args...), "--", "true")
			code, _, stderr := runNsbind(t, args...)
			if code != 125 || !strings.Contains(stderr, tt.says) {
				t.Fatalf("exit %d, want 125 saying %q:\n%s", code, tt.says, stderr)
			}
		})
	}
}

// Fault: a local UDP flood does not starve TCP. Under a limit of 64
// descriptors, 300 local clients (each its own 127.0.0.x address) open a
// UDP flow each; a TCP client of the same run is then served at once, not
// once the flows expire a minute later, and UDP still answers. (The flow
// bound was per host socket, 4096: the flows took every descriptor of the
// helper.)
func TestUDPFloodLeavesRoomForTCP(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	prlimit := needProgram(t, "prlimit")
	const limit, clients = 64, 300
	servers := fmt.Sprintf("%s __server udpecho4 7 & exec %s __server echo4 8", os.Args[0], os.Args[0])
	r := startNsbindVia(t, []string{prlimit, fmt.Sprintf("--nofile=%d:%d", limit, limit), "--"},
		"--isolated", "-p", "7:0/udp", "-p", "8:0", "--", "sh", "-c", servers)
	var udpAddr, tcpAddr netip.AddrPort
	for _, p := range r.ports {
		ip := netip.MustParseAddr(p.HostIP)
		if !ip.Is4() {
			continue
		}
		if p.Proto == "udp" {
			udpAddr = netip.AddrPortFrom(ip, p.HostPort)
		} else {
			tcpAddr = netip.AddrPortFrom(ip, p.HostPort)
		}
	}
	helper := helperOf(t, r)
	// The servers listen once a TCP echo and a UDP echo come back.
	if err := echoWithin(tcpAddr, 15*time.Second); err != nil {
		t.Fatalf("TCP before the flood: %v", err)
	}
	udpEcho := func(from netip.Addr) error {
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(udpAddr))
		if err != nil {
			return err
		}
		defer c.Close()
		for range 50 {
			c.Write([]byte("ping"))
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			b := make([]byte, 16)
			if n, err := c.Read(b); err == nil && string(b[:n]) == "ping" {
				return nil
			}
		}
		return fmt.Errorf("no echo from %s", udpAddr)
	}
	if err := udpEcho(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Fatalf("UDP before the flood: %v", err)
	}
	// The flood: one datagram from each of many addresses, each a flow.
	for i := range clients {
		from := netip.AddrFrom4([4]byte{127, 0, byte(1 + i/250), byte(2 + i%250)})
		c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)), net.UDPAddrFromAddrPort(udpAddr))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("flood"))
		c.Close()
	}
	// The host socket is read in order: once a last client is answered,
	// every datagram of the flood has made its flow.
	if err := udpEcho(netip.MustParseAddr("127.0.3.1")); err != nil {
		t.Fatalf("UDP after the flood: %v", err)
	}
	t.Logf("the helper holds %d descriptors after the flood (limit %d)", fdCount(t, helper), limit)
	for i := range 5 {
		if err := echoWithin(tcpAddr, 5*time.Second); err != nil {
			t.Fatalf("TCP connection %d after the flood: %v (the helper holds %d descriptors)", i+1, err, fdCount(t, helper))
		}
	}
	if err := udpEcho(netip.MustParseAddr("127.0.3.2")); err != nil {
		t.Fatalf("UDP after the TCP clients: %v", err)
	}
}

// tcpSocket is a line of /proc/PID/net/tcp or tcp6: its remote address
// (hex, ADDR:PORT) and its state (hex, 02 SYN-SENT, 0A LISTEN, ...).
type tcpSocket struct{ remote, state string }

// tcpSockets lists the TCP sockets in the network namespace of pid.
func tcpSockets(pid int) []tcpSocket {
	var socks []tcpSocket
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fields := strings.Fields(line); len(fields) > 3 {
				socks = append(socks, tcpSocket{remote: fields[2], state: fields[3]})
			}
		}
	}
	return socks
}

// synSentIn counts the TCP sockets in SYN-SENT in the network namespace of
// pid.
func synSentIn(t *testing.T, pid int) int {
	t.Helper()
	n := 0
	for _, s := range tcpSockets(pid) {
		if s.state == "02" {
			n++
		}
	}
	return n
}

// Fault: --source-address loopback against a server that stopped
// accepting (its backlog full): clients that give up leave no dial of the
// server behind in the helper, though --connect-timeout is long. (98 dials
// in SYN-SENT and 212 helper descriptors stayed two minutes.)
func TestLoopbackDialAbandoned(t *testing.T) {
	skipInDirectMode(t) // it measures the relay in the helper
	python := needProgram(t, "python3")
	stuck := `import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 80))
s.listen(0)
print("listening", flush=True)
time.sleep(600)`
	r := startNsbind(t, "--isolated", "--source-address", "loopback", "--connect-timeout", "60s", "-p", "80:0", "--", python, "-c", stuck)
	r.waitOutput("listening")
	a := r.addr(4)
	helper := helperOf(t, r)
	base := fdCount(t, helper)
	// The first client fills the accept queue; the others' dials hang.
	const clients = 20
	var cs []net.Conn
	for range clients {
		c, err := net.DialTimeout("tcp", a.String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	waitUntil(t, 10*time.Second, func() bool { return synSentIn(t, helper) >= clients-2 },
		func() string { return fmt.Sprintf("%d dials in SYN-SENT", synSentIn(t, helper)) })
	held := fdCount(t, helper)
	for _, c := range cs {
		c.Close()
	}
	// What may stay: the relays of the clients whose dial reached the
	// server's accept queue (one, or two when the kernel's check of the
	// full queue races: two sockets each, waiting for a server that never
	// reads), and a pipe kept for the next transfer.
	left := func() int { return base + 2 + 2*max(1, connectedTo(t, helper, 80)) }
	waitUntil(t, 5*time.Second, func() bool { return synSentIn(t, helper) == 0 && fdCount(t, helper) <= left() },
		func() string {
			return fmt.Sprintf("5s after the clients left: %d dials in SYN-SENT, the helper holds %d descriptors (%d before the clients, %d with them, %d relays reached the server)",
				synSentIn(t, helper), fdCount(t, helper), base, held, connectedTo(t, helper, 80))
		})
}

// connectedTo counts the TCP connections to port in the network namespace
// of pid that completed their handshake and are not closed yet (states
// other than SYN-SENT, SYN-RECV, TIME-WAIT, CLOSE and LISTEN).
func connectedTo(t *testing.T, pid int, port uint16) int {
	t.Helper()
	n := 0
	for _, s := range tcpSockets(pid) {
		if !strings.HasSuffix(s.remote, fmt.Sprintf(":%04X", port)) {
			continue
		}
		switch s.state {
		case "02", "03", "06", "07", "0A":
		default:
			n++
		}
	}
	return n
}
