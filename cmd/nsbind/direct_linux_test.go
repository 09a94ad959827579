package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests of --direct: the server gets the host socket at its
// bind. Each checks something the relay cannot give (the server holds the
// host socket, sees the client's own address and port, reports the host
// port), so it fails without the feature.

var loopback2 = netip.MustParseAddr("127.0.0.2")

// listeningInodes are the inodes of the host's TCP listeners and UDP
// sockets on port, from /proc/net of the test's (the host's) namespace.
func listeningInodes(t *testing.T, port uint16) map[string]bool {
	t.Helper()
	out := make(map[string]bool)
	suffix := fmt.Sprintf(":%04X", port)
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile("/proc/net/" + name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !strings.HasSuffix(f[1], suffix) {
				continue
			}
			if (strings.HasPrefix(name, "tcp") && f[3] == "0A") || (strings.HasPrefix(name, "udp") && f[3] == "07") {
				out[f[9]] = true
			}
		}
	}
	return out
}

// holdsHostSocket reports whether process pid has the host socket on host
// among its descriptors.
func holdsHostSocket(t *testing.T, pid int, host netip.AddrPort) bool {
	t.Helper()
	inodes := listeningInodes(t, host.Port())
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return true
		}
	}
	return false
}

// dialLine connects to ap from the address from (any when not valid),
// reads one line and returns it with the client's own address.
func dialLine(t *testing.T, from netip.Addr, ap netip.AddrPort) (string, netip.AddrPort) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
	}
	c, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatalf("connecting to %s: %v", ap, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v", ap, err)
	}
	return strings.TrimSpace(line), c.LocalAddr().(*net.TCPAddr).AddrPort()
}

// waitStderr waits until nsbind's stderr (where the server's goes too)
// contains s, at most 15 seconds.
func (r *nsbindRun) waitStderr(s string) {
	r.t.Helper()
	waitUntil(r.t, 15*time.Second, func() bool { return strings.Contains(r.stderr.String(), s) },
		func() string { return fmt.Sprintf("no %q on stderr:\n%s", s, r.stderr.String()) })
}

// Acceptance 1: python3's http.server binding port 80 (IPv4, and dual-stack
// with --bind ::) holds the host socket itself, serves both published host
// sockets, and logs the real client address.
func TestDirectHTTPServer(t *testing.T) {
	python := needProgram(t, "python3")
	curlPath := needProgram(t, "curl")
	dir := serverTempDir(t)
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from inside\n"), 0o644)
	tests := []struct {
		name   string
		root   bool // --root: the filter is installed without no_new_privs
		bind   string
		family int    // of the host socket the server gets
		client string // the source address whose requests the server logs
	}{
		{"IPv4", false, "0.0.0.0", 4, "127.0.0.2"},
		{"dual-stack", false, "::", 6, "::1"},
		{"IPv4 with --root", true, "0.0.0.0", 4, "127.0.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"--direct", "-p", "80:0", "--", python, "-m", "http.server", "--bind", tt.bind, "--directory", dir, "80"}
			if tt.root {
				args = append([]string{"--root"}, args...)
			}
			r := startNsbind(t, args...)
			for _, family := range []int{4, 6} {
				if got := curl(t, fmt.Sprintf("http://%s/hello.txt", r.addr(family))); got != "hello from inside\n" {
					t.Fatalf("IPv%d: got %q", family, got)
				}
			}
			server := processNamed(t, r.cmd.Process.Pid, "python3")
			if !holdsHostSocket(t, server, r.addr(tt.family)) {
				t.Errorf("the server does not hold the host socket %s", r.addr(tt.family))
			}
			if got := statusField(t, server, "Seccomp_filters"); got != "1" {
				t.Errorf("server Seccomp_filters %s, want the one bind filter", got)
			}
			out, err := exec.Command(curlPath, "-sS", "-g", "--max-time", "10", "--interface", tt.client,
				fmt.Sprintf("http://%s/hello.txt", r.addr(tt.family))).CombinedOutput()
			if err != nil {
				t.Fatalf("curl from %s: %v\n%s", tt.client, err, out)
			}
			r.waitStderr(tt.client + ` - - [`)
		})
	}
}

// unprivilegedRun prepares a run of nsbind as the unprivileged test user
// when the test runs as root: nginx started as uid 0 switches its workers
// to "nobody", which no uid 0 without capabilities can. It returns a
// directory the server may write to and the command's adjustment (nil for
// a test that already runs unprivileged).
func unprivilegedRun(t *testing.T) (string, func(*exec.Cmd)) {
	t.Helper()
	if os.Getuid() != 0 {
		return t.TempDir(), nil
	}
	u := asTestUser(t)
	return u.dir, func(cmd *exec.Cmd) {
		cmd.Path, cmd.Args[0], cmd.Dir = u.bin, u.bin, u.dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	}
}

// Acceptance 1: nginx, master and workers, with "listen 80; listen
// [::]:80;" serves both host sockets itself and logs each client's own
// address and port, and the host port as its server port.
func TestDirectNginx(t *testing.T) {
	nginx := needProgram(t, "nginx")
	dir, prepare := unprivilegedRun(t)
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 2;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 64; }
http {
  log_format peer '$remote_addr:$remote_port $server_port';
  access_log %[1]s/access.log peer;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 80;
    listen [::]:80;
    location / { return 200 "hello from nginx\n"; }
  }
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startNsbindIn(t, dir, prepare, "--direct", "-p", "80:0", "--", nginx,
		"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", filepath.Join(dir, "nginx.conf"))
	// A client that comes before nginx has bound both families waits on the
	// catch-all and is relayed to it on the host: wait for both.
	r.waitStderr(fmt.Sprintf("%s, %s → :80/tcp: native", r.addr(4), r.addr(6)))
	for _, tt := range []struct {
		from netip.Addr
		to   netip.AddrPort
	}{
		{loopback2, r.addr(4)},
		{netip.IPv6Loopback(), r.addr(6)},
	} {
		local := httpGet(t, tt.from, tt.to, "hello from nginx")
		// $server_port is the inside port: the host port differs, so
		// getsockname is answered with the inside port.
		want := fmt.Sprintf("%s:%d 80\n", local.Addr(), local.Port())
		waitUntil(t, 10*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			return strings.Contains(string(b), want)
		}, func() string {
			b, _ := os.ReadFile(filepath.Join(dir, "access.log"))
			return fmt.Sprintf("no %q in the access log:\n%s", want, b)
		})
	}
	var workers []int
	waitUntil(t, 10*time.Second, func() bool {
		workers = workers[:0]
		for _, p := range descendants(r.cmd.Process.Pid) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			if strings.HasPrefix(string(b), "nginx: worker process") {
				workers = append(workers, p)
			}
		}
		return len(workers) == 2
	}, func() string { return fmt.Sprintf("want 2 nginx workers, found %v", workers) })
	for _, w := range workers {
		if !holdsHostSocket(t, w, r.addr(4)) || !holdsHostSocket(t, w, r.addr(6)) {
			t.Errorf("worker %d does not hold both host sockets", w)
		}
	}
}

// httpGet sends GET / from the address from to ap, checks the body has
// want, and returns the client's own address.
func httpGet(t *testing.T, from netip.Addr, ap netip.AddrPort, want string) netip.AddrPort {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: from.AsSlice()}}
	c, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatalf("connecting to %s from %s: %v", ap, from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: test\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil || !strings.Contains(string(b), want) {
		t.Fatalf("GET %s from %s: %v\n%s", ap, from, err, b)
	}
	return c.LocalAddr().(*net.TCPAddr).AddrPort()
}

// Acceptance 1: iperf3 -s -p 80 serves through the host port, sees the
// client's own port, and binds again for each test (it closes its
// listener after each): the host socket is given to it again.
func TestDirectIperf3(t *testing.T) {
	iperf3 := needProgram(t, "iperf3")
	r := startNsbind(t, "--direct", "-p", "80:0", "--", iperf3, "-s", "-p", "80", "--forceflush")
	for i, to := range []netip.AddrPort{r.addr(6), r.addr(4), r.addr(6)} {
		var (
			out []byte
			err error
		)
		// iperf3's server refuses a client while it still winds the last
		// test down ("the server is busy"): ask again until it takes one.
		waitUntil(t, 60*time.Second, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err = exec.CommandContext(ctx, iperf3, "-c", to.Addr().String(), "-p", strconv.Itoa(int(to.Port())), "-n", "32M", "-J").Output()
			return !strings.Contains(string(out), "the server is busy")
		}, func() string { return "the iperf3 server stayed busy" })
		var res struct {
			Start struct {
				Connected []struct {
					LocalHost string `json:"local_host"`
					LocalPort int    `json:"local_port"`
				} `json:"connected"`
			} `json:"start"`
			End struct {
				SumSent struct {
					Bytes int64 `json:"bytes"`
				} `json:"sum_sent"`
				SumReceived struct {
					Bytes int64 `json:"bytes"`
				} `json:"sum_received"`
			} `json:"end"`
			Error string `json:"error"`
		}
		if jerr := json.Unmarshal(out, &res); err != nil || jerr != nil || res.Error != "" || len(res.Start.Connected) == 0 {
			t.Fatalf("iperf3 run %d to %s: %v %v %s\n%s", i, to, err, jerr, res.Error, out)
		}
		// The server's count may stop short of the last bytes in flight.
		if sent, got := res.End.SumSent.Bytes, res.End.SumReceived.Bytes; sent < 32<<20 || got < 16<<20 {
			t.Fatalf("iperf3 run %d to %s: sent %d bytes, the server received %d", i, to, sent, got)
		}
		if to.Addr().Is6() {
			// The server's own line for the data stream: its local port is
			// the inside port (getsockname is answered so, the host port
			// differing), its peer the client's own port.
			c := res.Start.Connected[0]
			r.waitOutput(fmt.Sprintf("local %s port 80 connected to %s port %d", to.Addr(), c.LocalHost, c.LocalPort))
		}
	}
}

// Acceptance 3: a port that is not published (an admin port) binds inside
// as usual, next to a published one that the server gets from the host.
// Go's own bind probes ([::1]:0) continue too, or the server would not
// start.
func TestDirectAdminPort(t *testing.T) {
	r := startNsbind(t, "--direct", "-p", "7:0", "--", os.Args[0], "__server", "admin", "7", "9")
	// getsockname shows the host address of the published port.
	r.waitOutput(fmt.Sprintf("listening on %s and 127.0.0.1:9", r.addr(4)))
	line, local := dialLine(t, loopback2, r.addr(4))
	if want := fmt.Sprintf("peer=%s admin=ok", local); line != want {
		t.Fatalf("got %q, want %q", line, want)
	}
	// The IPv6 host socket, which the IPv4 server did not take, reaches it
	// through nsbind.
	if line, _ := dialLine(t, netip.Addr{}, r.addr(6)); !strings.HasSuffix(line, "admin=ok") {
		t.Fatalf("through [::1]: got %q", line)
	}
}

// The host socket gets the flags and options the server chose before bind:
// blocking or not, close-on-exec or not, SO_RCVBUF, SO_KEEPALIVE,
// SO_REUSEADDR.
func TestDirectSocketOptions(t *testing.T) {
	for _, tt := range []struct {
		flavor            string
		nonblock, cloexec bool
	}{
		{"plain", false, false},
		{"nonblock-cloexec", true, true},
	} {
		t.Run(tt.flavor, func(t *testing.T) {
			r := startNsbind(t, "--direct", "-p", "80:0", "--", os.Args[0], "__server", "sockopts", "80", tt.flavor)
			// Once it has bound: a client that comes earlier waits on the
			// catch-all and reaches this IPv4 server through the host relay.
			r.waitOutput("sockopts {")
			line, local := dialLine(t, loopback2, r.addr(4))
			if want := "peer=" + local.String(); line != want {
				t.Fatalf("got %q, want %q", line, want)
			}
			var got sockoptsReport
			_, report, _ := strings.Cut(r.stdout.String(), "sockopts ")
			report, _, _ = strings.Cut(report, "\n")
			if err := json.Unmarshal([]byte(report), &got); err != nil {
				t.Fatal(err)
			}
			want := sockoptsReport{Sockname: r.addr(4).String(), CloExec: tt.cloexec, NonBlock: tt.nonblock,
				RcvBuf: 65536, KeepAlive: 1, ReuseAddr: 1}
			if got != want {
				t.Fatalf("after bind the server sees %+v, want %+v", got, want)
			}
		})
	}
}

// A server that binds the published port several times with SO_REUSEPORT
// (one listener per worker) gets the host socket each time: all workers
// accept from it.
func TestDirectReusePortWorkers(t *testing.T) {
	r := startNsbind(t, "--direct", "-p", "80:0", "--", os.Args[0], "__server", "reuseport", "80", "3")
	for i := range 3 {
		r.waitOutput(fmt.Sprintf("worker %d listening on %s", i, r.addr(4)))
	}
	for range 20 {
		line, local := dialLine(t, loopback2, r.addr(4))
		if !strings.HasSuffix(line, " peer="+local.String()) {
			t.Fatalf("got %q from %s", line, local)
		}
	}
}

// UDP: the server gets the host UDP socket and sees the client's own
// address.
func TestDirectUDP(t *testing.T) {
	r := startNsbind(t, "--direct", "--direct-udp", "-p", "53:0/udp", "--", os.Args[0], "__server", "udpwhoami4", "53")
	host := r.addr(4)
	r.waitOutput("listening on " + host.String())
	c, err := net.DialUDP("udp4", &net.UDPAddr{IP: loopback2.AsSlice()}, net.UDPAddrFromAddrPort(host))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(buf[:n]), "peer="+c.LocalAddr().String(); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// The ::1 host socket, which the IPv4 server did not take, is relayed
	// to it on the host.
	c6, err := net.DialUDP("udp6", nil, net.UDPAddrFromAddrPort(r.addr(6)))
	if err != nil {
		t.Fatal(err)
	}
	defer c6.Close()
	c6.SetDeadline(time.Now().Add(10 * time.Second))
	c6.Write([]byte("hello"))
	n, err = c6.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "peer=127.0.0.1:") {
		t.Fatalf("over ::1: %q, %v; want an answer relayed from 127.0.0.1", buf[:n], err)
	}
}

// A bind the server's host sockets cannot take (here: only an IPv6 host
// socket is published, the server listens on IPv4 only) continues inside,
// and the host socket is relayed to it as without --direct.
func TestDirectOtherFamilyRelayed(t *testing.T) {
	r := startNsbind(t, "--direct", "-p", "7:[::1]:0", "--", os.Args[0], "__server", "whoami", "tcp4", "7")
	r.waitOutput("listening on 0.0.0.0:7")
	if line, _ := dialLine(t, netip.Addr{}, r.addr(6)); !strings.HasPrefix(line, "peer=127.0.0.1:") {
		t.Fatalf("got %q, want the relay's address inside", line)
	}
}

// Where seccomp user notification is not available (here a seccomp filter
// on nsbind makes seccomp(2) fail, as a container's profile may), --direct
// says so once and the ports are relayed: the server binds inside.
func TestDirectUnavailable(t *testing.T) {
	t.Setenv("NSBIND_TEST_DENY_SECCOMP", "1")
	r := startNsbind(t, "--direct", "-p", "7:0", "--", os.Args[0], "__server", "whoami", "tcp", "7")
	r.waitOutput("listening on [::]:7")
	for _, family := range []int{4, 6} {
		if line, _ := dialLine(t, netip.Addr{}, r.addr(family)); !strings.HasPrefix(line, "peer=") {
			t.Fatalf("IPv%d: got %q", family, line)
		}
	}
	if n := strings.Count(r.stderr.String(), "(--direct) is not available here"); n != 1 {
		t.Fatalf("said %d times that --direct is not available:\n%s", n, r.stderr.String())
	}
}
