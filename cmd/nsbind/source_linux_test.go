package main

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// askPeer connects to ap from local (port 0: any) and returns the client
// address the "peer" test server saw, and the client's own address.
func askPeer(t *testing.T, local, ap netip.AddrPort) (seen, own string) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if local.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(local)
	}
	c, err := d.Dial("tcp", ap.String())
	if err != nil {
		t.Fatalf("dialing %s from %s: %v", ap, local, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading from %s: %v", ap, err)
	}
	return strings.TrimSpace(line), c.LocalAddr().String()
}

// Acceptance: rootless, a client bound to 127.0.0.2 reaches the server
// through 127.0.0.1:PORT and the server sees 127.0.0.2 and the client's
// port; likewise over ::1.
func TestServerSeesClientAddress(t *testing.T) {
	// With --direct a dual-stack server takes the ::1 host socket and nsbind
	// relays 127.0.0.1 to it on the host: IPv4 clients come from ::1 there
	// (TestDirect* test what the server sees in that mode).
	skipInDirectMode(t)
	r := startNsbind(t, "-p", "80:0", "--", os.Args[0], "__server", "peer", "80")
	r.waitOutput("listening")
	seen, own := askPeer(t, netip.MustParseAddrPort("127.0.0.2:0"), r.addr(4))
	if seen != own {
		t.Errorf("IPv4: server saw %s, the client is %s", seen, own)
	}
	seen, own = askPeer(t, netip.MustParseAddrPort("[::1]:0"), r.addr(6))
	if seen != own {
		t.Errorf("IPv6: server saw %s, the client is %s", seen, own)
	}
}

// askUDPPeer sends a datagram to ap from local and returns the client
// address the "udppeer" test server saw, and the client's own address.
func askUDPPeer(t *testing.T, local, ap netip.AddrPort) (seen, own string) {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(local), net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 200)
	// The server may still be starting: ask until it answers (bounded).
	for range 100 {
		c.Write([]byte("who am I"))
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil {
			return string(buf[:n]), c.LocalAddr().String()
		}
	}
	t.Fatalf("no answer from %s over UDP", ap)
	return "", ""
}

// Acceptance: the same for UDP: the server's recvfrom() sees the client.
func TestUDPServerSeesClientAddress(t *testing.T) {
	// With --direct a dual-stack server takes the ::1 host socket and nsbind
	// relays 127.0.0.1 to it on the host: IPv4 clients come from ::1 there
	// (TestDirect* test what the server sees in that mode).
	skipInDirectMode(t)
	r := startNsbind(t, "-p", "53:0/udp", "--", os.Args[0], "__server", "udppeer", "53")
	// Datagrams that come before the server listens may go to the other
	// family, which it also listens on: ask once it does.
	r.waitOutput("listening")
	seen, own := askUDPPeer(t, netip.MustParseAddrPort("127.0.0.2:0"), r.addr(4))
	if seen != own {
		t.Errorf("IPv4: server saw %s, the client is %s", seen, own)
	}
	seen, own = askUDPPeer(t, netip.MustParseAddrPort("[::1]:0"), r.addr(6))
	if seen != own {
		t.Errorf("IPv6: server saw %s, the client is %s", seen, own)
	}
}

// --source-address=loopback asks for plain relaying: the server sees the
// helper's loopback address.
func TestSourceAddressLoopback(t *testing.T) {
	skipInDirectMode(t)
	r := startNsbind(t, "--source-address", "loopback", "-p", "80:0", "--", os.Args[0], "__server", "peer", "80")
	// A client that comes while the server starts may reach it over the
	// other family (refused on its own, then taken on the other).
	r.waitOutput("listening")
	seen, own := askPeer(t, netip.MustParseAddrPort("127.0.0.2:0"), r.addr(4))
	if !strings.HasPrefix(seen, "127.0.0.1:") || seen == own {
		t.Errorf("server saw %s (client %s), want the helper's 127.0.0.1", seen, own)
	}
}

// A client port already taken inside does not fail the connection: the
// address is kept and the port varies.
func TestClientPortTakenInside(t *testing.T) {
	skipInDirectMode(t)
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	hold := ln.Addr().String() // free on the host once closed; taken inside
	ln.Close()
	r := startNsbind(t, "-p", "80:0", "--", os.Args[0], "__server", "peer", "80", hold)
	r.waitOutput("listening") // the server holds the port inside
	seen, own := askPeer(t, netip.MustParseAddrPort(hold), r.addr(4))
	if own != hold {
		t.Fatalf("the client did not get %s (got %s)", hold, own)
	}
	if !strings.HasPrefix(seen, "127.0.0.2:") || seen == hold {
		t.Fatalf("server saw %s, want 127.0.0.2 with another port than the taken %s", seen, hold)
	}
}

// Acceptance: 5,000 sequential short connections from one client address
// all succeed, and the server sees that address on every one.
func TestManySequentialConnections(t *testing.T) {
	// With --direct a dual-stack server takes the ::1 host socket and nsbind
	// relays 127.0.0.1 to it on the host: IPv4 clients come from ::1 there
	// (TestDirect* test what the server sees in that mode).
	skipInDirectMode(t)
	r := startNsbind(t, "-p", "80:0", "--", os.Args[0], "__server", "peer", "80")
	r.waitOutput("listening")
	ap := r.addr(4)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	for i := range 5000 {
		c, err := net.DialTCP("tcp", local, net.TCPAddrFromAddrPort(ap))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if !strings.HasPrefix(line, "127.0.0.2:") {
			t.Fatalf("connection %d: server saw %q", i, line)
		}
	}
}

// Acceptance: nginx with "listen 80 proxy_protocol" logs the real client
// through --proxy-protocol v1 and v2.
func TestProxyProtocolNginx(t *testing.T) {
	skipInDirectMode(t)
	nginx := needProgram(t, "nginx")
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			// nginx run by root (uid 0 inside, but with no capabilities)
			// would try to switch to its worker user: run it as the user
			// it is meant for here.
			var u *testUser
			prefix := t.TempDir()
			if os.Getuid() == 0 {
				u = asTestUser(t)
				prefix = u.dir
			}
			conf := filepath.Join(prefix, "nginx.conf")
			accessLog := filepath.Join(prefix, "access.log")
			os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events {}
http {
	log_format real '$proxy_protocol_addr:$proxy_protocol_port';
	access_log %[1]s/access.log real;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 80 proxy_protocol;
		location / { return 200 "ok\n"; }
	}
}
`, prefix)), 0o644)
			r := startNsbindAs(t, u, "--proxy-protocol", version, "-p", "80:0", "--",
				nginx, "-e", filepath.Join(prefix, "error.log"), "-p", prefix, "-c", conf, "-g", "daemon off;")
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
			c, err := d.Dial("tcp", r.addr(4).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
			reply, _ := bufio.NewReader(c).ReadString('\n')
			if !strings.Contains(reply, "200") {
				t.Fatalf("nginx answered %q", reply)
			}
			own := c.LocalAddr().String()
			waitUntil(t, 10*time.Second, func() bool {
				b, _ := os.ReadFile(accessLog)
				return strings.Contains(string(b), own)
			}, func() string {
				b, _ := os.ReadFile(accessLog)
				e, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
				return fmt.Sprintf("access log %q lacks the client %s; error log:\n%s", b, own, e)
			})
		})
	}
}

// Acceptance: a client on another machine (a network namespace made by the
// test, joined by veth) reaches -p 80:[::]:PORT published by nsbind running
// as the unprivileged user; the server sees the client's IPv4 and IPv6
// addresses. Root only for the setup.
func TestServerSeesRemoteClient(t *testing.T) {
	u := asTestUser(t)
	python := needProgram(t, "python3")
	remote := newRemoteHost(t)
	r := startNsbindAs(t, u, "--log-level", "debug", "-p", "80:[::]:0", "-p", "53:[::]:0/udp", "--", "sh", "-c",
		u.bin+" __server udppeer 53 & exec "+u.bin+" __server peer 80")
	waitUntil(t, 15*time.Second, func() bool { return strings.Count(r.stdout.String(), "listening") == 2 },
		func() string { return "the servers did not listen: " + r.stdout.String() })
	var port, udpPort uint16
	for _, p := range r.ports {
		if p.Proto == "tcp" {
			port = p.HostPort
		} else {
			udpPort = p.HostPort
		}
	}
	const client = `import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(s.recv(200).decode().strip(), "%s" % (s.getsockname()[0],), s.getsockname()[1])`
	for _, host := range []string{hostVeth4, hostVeth6} {
		out, err := remote.command(python, "-c", client, host, fmt.Sprint(port)).CombinedOutput()
		if err != nil {
			t.Fatalf("client to %s: %v\n%s", host, err, out)
		}
		f := strings.Fields(string(out))
		if len(f) != 3 {
			t.Fatalf("client output %q", out)
		}
		want := net.JoinHostPort(f[1], f[2])
		if f[0] != want {
			t.Errorf("via %s: server saw %s, the client is %s", host, f[0], want)
		}
	}
	const udpClient = `import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
s.connect((host, port))
for _ in range(50):
    s.send(b"who am I")
    try:
        seen = s.recv(200).decode()
        break
    except socket.timeout:
        continue
else:
    sys.exit("no answer")
print(seen, s.getsockname()[0], s.getsockname()[1])`
	for _, host := range []string{hostVeth4, hostVeth6} {
		out, err := remote.command(python, "-c", udpClient, host, fmt.Sprint(udpPort)).CombinedOutput()
		if err != nil {
			t.Fatalf("UDP client to %s: %v\n%s", host, err, out)
		}
		f := strings.Fields(string(out))
		if len(f) != 3 {
			t.Fatalf("UDP client output %q", out)
		}
		if want := net.JoinHostPort(f[1], f[2]); f[0] != want {
			t.Errorf("UDP via %s: server saw %s, the client is %s", host, f[0], want)
		}
	}
}
