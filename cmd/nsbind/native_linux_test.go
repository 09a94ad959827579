package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The end-to-end tests of the native path, the default: the server gets
// the host socket of its family at its bind, for every common shape of
// server socket. They pass --direct themselves, so the relay pass runs
// them natively too; what they check the relay cannot give (the server
// holds the very host socket that serves a family).

// hostListener is the inode of the host's TCP listener bound exactly to
// ap (in /proc/net/tcp or tcp6 of the test's namespace, the host's), ""
// when there is none.
func hostListener(t *testing.T, ap netip.AddrPort) string {
	t.Helper()
	name, want := "/proc/net/tcp", ""
	a := ap.Addr()
	if a.Is4() {
		b := a.As4()
		want = fmt.Sprintf("%08X", binary.LittleEndian.Uint32(b[:]))
	} else {
		name = "/proc/net/tcp6"
		b := a.As16()
		for i := 0; i < 16; i += 4 {
			want += fmt.Sprintf("%08X", binary.LittleEndian.Uint32(b[i:i+4]))
		}
	}
	want += fmt.Sprintf(":%04X", ap.Port())
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == want && f[3] == "0A" {
			return f[9]
		}
	}
	return ""
}

// holdsInode reports whether process pid has the socket with inode ino.
func holdsInode(t *testing.T, pid int, ino string) bool {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); link == "socket:["+ino+"]" {
			return true
		}
	}
	return false
}

// testServerPid is the pid of the test binary running as the server below
// nsbind run r (the helper is the same binary: the server is the one with
// __server in its command line).
func testServerPid(t *testing.T, r *nsbindRun) int {
	t.Helper()
	var found int
	waitUntil(t, 10*time.Second, func() bool {
		for _, p := range descendants(r.cmd.Process.Pid) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if strings.Contains(string(b), "\x00__server\x00") {
				found = p
				return true
			}
		}
		return false
	}, func() string { return "no test server below nsbind" })
	return found
}

var (
	anyIPv6   = netip.IPv6Unspecified()
	loopback4 = netip.MustParseAddr("127.0.0.1")
)

// Acceptance 2: each common shape of server socket, with a client of each
// loopback family. Where the server's own socket would have served the
// family on the host, the client reaches it natively: the server holds
// the host socket that takes that family (the catch-all [::] on lo, or the
// family's own socket) and sees the client's own address and port. A family
// the server does not listen on is relayed on the host to the socket it has.
func TestNativeShapes(t *testing.T) {
	tests := []struct {
		shape string
		// serves[4], serves[6]: the host socket that takes the family
		// natively ([::] for the catch-all), invalid when relayed.
		serves map[int]netip.Addr
	}{
		{"1", map[int]netip.Addr{4: anyIPv6, 6: anyIPv6}},
		{"2", map[int]netip.Addr{4: loopback4, 6: netip.IPv6Loopback()}},
		{"3", map[int]netip.Addr{4: loopback4}},
		{"4", map[int]netip.Addr{4: loopback4}},
		{"5", map[int]netip.Addr{6: netip.IPv6Loopback()}},
	}
	for _, tt := range tests {
		t.Run("shape "+tt.shape, func(t *testing.T) {
			r := startNsbind(t, "--direct", "-p", "7:0", "--", os.Args[0], "__server", "shape", tt.shape, "7")
			r.waitOutput("listening")
			if len(tt.serves) == 2 {
				r.waitStderr(fmt.Sprintf("%s, %s → :7/tcp: native", r.addr(4), r.addr(6)))
			}
			server := testServerPid(t, r)
			for _, family := range []int{4, 6} {
				from := loopback2
				if family == 6 {
					from = netip.IPv6Loopback()
				}
				line, local := dialLine(t, from, r.addr(family))
				at, native := tt.serves[family]
				if !native {
					if line == "peer="+local.String() || !strings.HasPrefix(line, "peer=") {
						t.Errorf("IPv%d, relayed on the host: got %q from %s, want the relay's address", family, line, local)
					}
					continue
				}
				if line != "peer="+local.String() {
					t.Errorf("IPv%d: got %q, want the client's own address %s", family, line, local)
				}
				ino := hostListener(t, netip.AddrPortFrom(at, r.addr(family).Port()))
				if ino == "" || !holdsInode(t, server, ino) {
					t.Errorf("IPv%d: the server does not hold the host socket %s (inode %q)", family, at, ino)
				}
			}
		})
	}
}

// A client that connects before the server binds waits in the catch-all's
// backlog and is served once it does: natively when the server takes the
// catch-all, relayed on the host when it takes a family socket.
func TestNativeEarlyClient(t *testing.T) {
	for _, shape := range []string{"1", "3"} {
		t.Run("shape "+shape, func(t *testing.T) {
			// The server starts binding once the test creates the gate
			// file, so the clients come before it binds.
			dir := serverTempDir(t) // the server may run as the test user
			gate := filepath.Join(dir, "gate")
			r := startNsbind(t, "--direct", "-p", "7:0", "--", "/bin/sh", "-c",
				`while [ ! -e "$2" ]; do sleep 0.02; done; exec "$0" __server shape "$1" 7`, os.Args[0], shape, gate)
			done := make(chan string, 2)
			for _, family := range []int{4, 6} {
				go func() {
					c, err := net.DialTimeout("tcp", r.addr(family).String(), 10*time.Second)
					if err != nil {
						done <- fmt.Sprintf("IPv%d: %v", family, err)
						return
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(15 * time.Second))
					buf := make([]byte, 256)
					n, err := c.Read(buf)
					if err != nil || !strings.HasPrefix(string(buf[:n]), "peer=") {
						done <- fmt.Sprintf("IPv%d: got %q, %v", family, buf[:n], err)
						return
					}
					done <- ""
				}()
			}
			waitUntil(t, 10*time.Second, func() bool {
				return queued(t, r.addr(4).Port()) >= 2
			}, func() string { return "the clients are not queued on the catch-all" })
			if err := os.WriteFile(gate, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if msg := <-done; msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// queued is the number of connections waiting in the accept queue of the
// host's TCP listeners on port.
func queued(t *testing.T, port uint16) int {
	t.Helper()
	n := 0
	suffix := fmt.Sprintf(":%04X", port)
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, _ := os.ReadFile(name)
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !strings.HasSuffix(f[1], suffix) || f[3] != "0A" {
				continue
			}
			// tx_queue:rx_queue; a listener's rx_queue is its accept queue.
			_, rx, _ := strings.Cut(f[4], ":")
			var q int
			fmt.Sscanf(rx, "%x", &q)
			n += q
		}
	}
	return n
}

// The inside view: a program inside that connects to the server's own
// port on loopback reaches the server, whose socket is a host socket, for
// each family the server listens on; a family it does not listen on is
// refused inside as it would be on the host.
func TestNativeInsideView(t *testing.T) {
	for _, tt := range []struct {
		shape    string
		refused6 bool
	}{{"1", false}, {"3", true}} {
		t.Run("shape "+tt.shape, func(t *testing.T) {
			r := startNsbind(t, "--direct", "-p", "80:0", "--", os.Args[0], "__server", "shape", tt.shape, "80", "view")
			r.waitOutput("view [::1]:80: ")
			out := r.stdout.String()
			if !strings.Contains(out, "view 127.0.0.1:80: peer=127.0.0.1:") {
				t.Errorf("127.0.0.1 inside does not reach the server:\n%s", out)
			}
			want6 := "view [::1]:80: peer="
			if tt.refused6 {
				want6 = "view [::1]:80: refused"
			}
			if !strings.Contains(out, want6) {
				t.Errorf("::1 inside: want %q:\n%s", want6, out)
			}
		})
	}
}

// Acceptance: a published port nothing inside binds (-p 80:0 for a server
// on 8000, the docker-order slip). Its clients are reset within
// --connect-timeout, in both paths (the relay pass runs this with the
// relay), and nsbind says once, at the default level, that nothing listens
// on port 80 and that the server listens on 8000.
func TestNativeNeverBound(t *testing.T) {
	r := startNsbind(t, "--connect-timeout", "1s", "-p", "80:0", "--", os.Args[0], "__server", "whoami", "tcp", "8000")
	r.waitOutput("listening on")
	for _, family := range []int{4, 6, 4} {
		start := time.Now()
		c, err := net.DialTimeout("tcp", r.addr(family).String(), 5*time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(10 * time.Second))
			n, rerr := c.Read(make([]byte, 16))
			c.Close()
			if rerr == nil {
				t.Fatalf("IPv%d: read %d bytes from a port nothing listens on", family, n)
			}
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("IPv%d: the client waited %v, want about --connect-timeout (1s)", family, d)
		}
	}
	want := "nothing inside listens on port 80"
	r.waitStderr(want)
	stderr := r.stderr.String()
	if n := strings.Count(stderr, want); n != 1 {
		t.Errorf("said %d times that nothing listens, want once:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "the server listens on port 8000") {
		t.Errorf("does not name the port the server listens on:\n%s", stderr)
	}
}

// Acceptance: dnsmasq in its default (wildcard) mode answers over TCP and
// UDP, from both loopback families, with a host port other than 53. Over
// TCP it compares each connection's local address and port with its own:
// the native path answers getsockname with the inside port.
func TestNativeDnsmasq(t *testing.T) {
	dnsmasq := needProgram(t, "dnsmasq")
	dig := userProgram(t, "dig")
	dir, prepare := unprivilegedRun(t)
	name := "nsbind-test"
	if os.Getuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		name = u.Username
	}
	g, err := user.LookupGroupId(groupOf(t, name))
	if err != nil {
		t.Fatal(err)
	}
	r := startNsbindIn(t, dir, prepare, "--direct", "-p", "53:0/tcp", "-p", "53:0/udp", "--", dnsmasq,
		"-k", "--port=53", "--no-resolv", "--no-hosts", "--address=/test.example/192.0.2.1",
		"--user="+name, "--group="+g.Name, "--pid-file=", "--log-facility=-")
	var tcp4, udp4 netip.AddrPort
	for _, p := range r.ports {
		if p.HostIP == "127.0.0.1" && p.Proto == "tcp" {
			tcp4 = netip.AddrPortFrom(loopback4, p.HostPort)
		}
		if p.HostIP == "127.0.0.1" && p.Proto == "udp" {
			udp4 = netip.AddrPortFrom(loopback4, p.HostPort)
		}
	}
	for _, tt := range []struct {
		proto, server string
		port          uint16
	}{
		{"tcp", "127.0.0.1", tcp4.Port()}, {"tcp", "::1", tcp4.Port()},
		{"udp", "127.0.0.1", udp4.Port()}, {"udp", "::1", udp4.Port()},
	} {
		args := []string{"+short", "+time=2", "+tries=1", "-p", fmt.Sprint(tt.port), "@" + tt.server, "test.example"}
		if tt.proto == "tcp" {
			args = append([]string{"+tcp"}, args...)
		}
		var out []byte
		waitUntil(t, 15*time.Second, func() bool {
			out, _ = exec.Command(dig, args...).CombinedOutput()
			return strings.TrimSpace(string(out)) == "192.0.2.1"
		}, func() string { return fmt.Sprintf("%s to %s: %s", tt.proto, tt.server, out) })
	}
}

// groupOf is the primary group id of user name.
func groupOf(t *testing.T, name string) string {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Skipf("no user %s: %v", name, err)
	}
	return u.Gid
}

// --relay (and --direct=false) is the relay everywhere: the server binds
// inside and holds no host socket.
func TestRelayFlag(t *testing.T) {
	for _, flag := range []string{"--relay", "--direct=false"} {
		t.Run(flag, func(t *testing.T) {
			r := startNsbind(t, flag, "-p", "7:0", "--", os.Args[0], "__server", "shape", "1", "7")
			r.waitOutput("listening")
			for _, family := range []int{4, 6} {
				if line, _ := dialLine(t, netip.Addr{}, r.addr(family)); !strings.HasPrefix(line, "peer=") {
					t.Fatalf("IPv%d: got %q", family, line)
				}
			}
			if server := testServerPid(t, r); holdsHostSocket(t, server, r.addr(4)) {
				t.Errorf("with %s the server holds a host socket", flag)
			}
		})
	}
}

// --stats on the native path counts the connections the server accepted
// itself (seen in the host's socket table) and those relayed on the host
// (here the IPv6 clients of an IPv4-only server).
func TestNativeStats(t *testing.T) {
	r := startNsbind(t, "--direct", "--stats", "-p", "7:0", "--", os.Args[0], "__server", "shape", "3", "7")
	r.waitOutput("listening")
	for range 3 {
		dialLine(t, loopback2, r.addr(4))
	}
	for range 2 {
		dialLine(t, netip.IPv6Loopback(), r.addr(6))
	}
	r.stop(15 * time.Second)
	stderr := r.stderr.String()
	total := 0
	for _, line := range strings.Split(stderr, "\n") {
		var n int
		if _, after, ok := strings.Cut(line, "/tcp: "); ok {
			if _, err := fmt.Sscanf(after, "%d connection", &n); err == nil {
				total += n
			}
		}
	}
	if total != 5 || !strings.Contains(stderr, "(3 accepted by the server itself") {
		t.Errorf("want 5 connections, 3 of them accepted by the server itself:\n%s", stderr)
	}
}
