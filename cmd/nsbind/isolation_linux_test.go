package main

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// What a server can reach, measured: the tests of this file attack the
// way out of the namespace from inside (and the veth's inside from the
// host) and check on the other end that nothing arrived.

// reachProbe runs inside. Its arguments are PROTO|HOST|PORT, with PROTO
// tcp, udp or udplite (IPPROTO_UDPLITE, 136) and HOST "gw" for the default
// gateway inside (the veth's host side with --net=veth). For tcp it prints
// "OK " and the first line the other end sent, or the errno's name; for the
// others "sent" or the errno's name. Then it prints "done" and, if
// PORT_TO_SERVE is set, answers every connection to [::]:PORT_TO_SERVE with
// "hello".
const reachProbe = `
import errno, os, socket, sys
def gw():
    for l in open("/proc/net/route").read().splitlines()[1:]:
        f = l.split()
        if f[1] == "00000000":
            return socket.inet_ntoa(bytes.fromhex(f[2])[::-1])
    return "0.0.0.0"
def name(e):
    return errno.errorcode.get(e.errno, str(e))
for a in sys.argv[1:]:
    proto, host, port = a.split("|")
    if host == "gw":
        host = gw()
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if proto == "tcp":
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host, int(port)))
            r = "OK " + s.recv(100).decode().strip()
        else:
            s = socket.socket(fam, socket.SOCK_DGRAM, 136 if proto == "udplite" else 0)
            s.sendto(b"probe", (host, int(port)))
            r = "sent"
    except OSError as e:
        r = name(e)
    print(a, r, flush=True)
print("done", flush=True)
if os.environ.get("PORT_TO_SERVE"):
    srv = socket.create_server(("::", int(os.environ["PORT_TO_SERVE"])), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        c, _ = srv.accept()
        c.sendall(b"hello\n")
        c.close()
`

// datagramSink receives UDP on 9001 and UDP-Lite on 9002 of both families
// and prints "PROTO FROM DATA" for each datagram.
const datagramSink = `
import select, socket
socks = {}
for proto, port in (("udp", 9001), ("udplite", 9002)):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, 136 if proto == "udplite" else 0)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    socks[s] = proto
print("listening", flush=True)
while True:
    for s in select.select(list(socks), [], [])[0]:
        d, a = s.recvfrom(2048)
        h = a[0][7:] if a[0].startswith("::ffff:") else a[0]
        print(socks[s], h, d.decode(errors="replace"), flush=True)
`

// hostTCPService listens on every address of the host (both families) and
// sends "host" to whoever connects; it returns the port and the number of
// connections so far.
func hostTCPService(t *testing.T, addr string) (uint16, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Write([]byte("host\n"))
			c.Close()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port), n
}

// hostUDPService counts the datagrams that arrive at addr and answers each
// with "host".
func hostUDPService(t *testing.T, addr string) (uint16, *atomic.Int32) {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := new(atomic.Int32)
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			n.Add(1)
			c.WriteTo([]byte("host\n"), from)
		}
	}()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port), n
}

// startSink runs datagramSink on the remote machine and returns its output.
func (h *vethRemote) startSink(t *testing.T, python string) *lockedBuffer {
	t.Helper()
	return h.start(t, "listening", python, "-c", datagramSink)
}

// sendMarkers sends "marker" by UDP and UDP-Lite from the host to the
// sink at addr and waits until both arrived: a datagram the namespace sent
// before them would have arrived by then.
func sendMarkers(t *testing.T, sink *lockedBuffer, addr string) {
	t.Helper()
	ip := netip.MustParseAddr(addr)
	for _, m := range []struct {
		proto int
		port  int
		name  string
	}{{unix.IPPROTO_UDP, 9001, "udp"}, {unix.IPPROTO_UDPLITE, 9002, "udplite"}} {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, m.proto)
		if err != nil {
			t.Fatalf("a %s socket on the host: %v", m.name, err)
		}
		err = unix.Sendto(fd, []byte("marker"), 0, &unix.SockaddrInet4{Port: m.port, Addr: ip.As4()})
		unix.Close(fd)
		if err != nil {
			t.Fatalf("sending the %s marker: %v", m.name, err)
		}
		waitUntil(t, 10*time.Second, func() bool {
			return strings.Contains(sink.String(), m.name+" ") && strings.Contains(sink.String(), "marker")
		},
			func() string { return "the " + m.name + " marker did not arrive: " + sink.String() })
	}
	waitUntil(t, 10*time.Second, func() bool { return strings.Count(sink.String(), "marker") >= 2 },
		func() string { return "the markers did not arrive: " + sink.String() })
}

// outsideWorld is what traffic from inside could reach outside the
// namespace: another machine behind an interface that forwards (a TCP
// server on 9000, the datagram sink on 9001 and 9002) and the host's own
// TCP and UDP services on every address, at the ports tcpPort and udpPort.
type outsideWorld struct {
	remote                 *vethRemote
	sink                   *lockedBuffer
	tcpPort, udpPort       string
	tcpConns, udpDatagrams *atomic.Int32
}

func newOutsideWorld(t *testing.T, python string) *outsideWorld {
	t.Helper()
	w := &outsideWorld{remote: newVethRemote(t)}
	w.remote.serve(t, python, 9000)
	w.sink = w.remote.startSink(t, python)
	tcpPort, tcpConns := hostTCPService(t, ":0")
	udpPort, udpDatagrams := hostUDPService(t, ":0")
	w.tcpPort, w.udpPort = strconv.Itoa(int(tcpPort)), strconv.Itoa(int(udpPort))
	w.tcpConns, w.udpDatagrams = tcpConns, udpDatagrams
	return w
}

// nothingArrived checks, once the markers from the host arrived, that no
// datagram from inside reached the other machine and that the host's
// services had no client from inside.
func (w *outsideWorld) nothingArrived(t *testing.T) {
	t.Helper()
	sendMarkers(t, w.sink, vethRemote4)
	if s := w.sink.String(); strings.Contains(s, "probe") {
		t.Errorf("datagrams from inside reached the other machine:\n%s", s)
	}
	if n := w.tcpConns.Load(); n != 0 {
		t.Errorf("the host's TCP service had %d connections from inside", n)
	}
	if n := w.udpDatagrams.Load(); n != 0 {
		t.Errorf("the host's UDP service got %d datagrams from inside", n)
	}
}

// probeLines maps each probe argument to its result.
func probeLines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok && strings.Contains(k, "|") {
			m[k] = v
		}
	}
	return m
}

// --isolated --net=veth: nothing leaves the namespace. TCP to the veth's
// host address, to the host's other addresses and to another machine
// behind an interface that forwards fails at once; UDP and UDP-Lite
// datagrams to them never arrive; the host's services count no client.
// What is published still comes in, from the other machine through the
// kernel.
func TestVethIsolated(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	world := newOutsideWorld(t, python)
	remote, tp, up := world.remote, world.tcpPort, world.udpPort
	targets := []string{
		"tcp|gw|" + tp, "tcp|" + vethHost4 + "|" + tp, "tcp|" + vethHost6 + "|" + tp,
		"tcp|" + vethRemote4 + "|9000", "tcp|" + vethRemote6 + "|9000",
		"udp|gw|" + up, "udp|" + vethHost4 + "|" + up,
		"udp|" + vethRemote4 + "|9001", "udplite|" + vethRemote4 + "|9002",
		"udp|" + vethRemote6 + "|9001", "udplite|" + vethRemote6 + "|9002",
	}
	r := startNsbind(t, append([]string{"--isolated", "--net=veth", "-p", "80:0.0.0.0:0", "--",
		"env", "PORT_TO_SERVE=80", python, "-c", reachProbe}, targets...)...)
	r.waitOutput("done\n")
	got := probeLines(r.stdout.String())
	for _, a := range targets {
		res, ok := got[a]
		switch {
		case !ok:
			t.Errorf("%s: no result", a)
		case strings.HasPrefix(a, "tcp|") && res != "ENETUNREACH":
			t.Errorf("%s: %s, want ENETUNREACH at once (no way out)", a, res)
		}
	}
	world.nothingArrived(t)

	// Published still comes in, through the kernel.
	port := r.addr(4).Port()
	out, err := remote.command(python, "-c", askScript, vethHost4, strconv.Itoa(int(port))).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "hello ") {
		t.Fatalf("the published port from the other machine: %v: %s", err, out)
	}
	if n := dnatPackets(t, vethName(r)); n == 0 {
		t.Errorf("the DNAT rule counted no packet: the connection did not take the kernel path")
	}
}

// --net=veth without --isolated: the way out is the helper's host sockets,
// and only that. TCP and UDP to the other machine arrive from the host's
// address; a UDP-Lite datagram (a protocol the helper does not carry),
// which the kernel would route through the veth, arrives nowhere, and
// neither over IPv6.
func TestVethNothingLeavesByKernel(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	remote := newVethRemote(t)
	remote.serve(t, python, 9000)
	sink := remote.startSink(t, python)
	targets := []string{
		"tcp|" + vethRemote4 + "|9000", "udp|" + vethRemote4 + "|9001",
		"udplite|" + vethRemote4 + "|9002", "udplite|" + vethRemote6 + "|9002",
	}
	code, stdout, stderr := runNsbind(t, append([]string{"run", "--net=veth", "--", python, "-c", reachProbe}, targets...)...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	got := probeLines(stdout)
	if res := got[targets[0]]; res != "OK "+vethHost4+" "+vethRemote4 {
		t.Errorf("TCP to the other machine: %q, want it from the host's address %s", res, vethHost4)
	}
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(sink.String(), "udp "+vethHost4+" probe") },
		func() string { return "the UDP datagram did not arrive from the host's address: " + sink.String() })
	sendMarkers(t, sink, vethRemote4)
	for _, l := range strings.Split(sink.String(), "\n") {
		if strings.HasPrefix(l, "udplite ") && strings.HasSuffix(l, " probe") {
			t.Errorf("a UDP-Lite datagram from inside reached the other machine: %s", l)
		}
	}
}

// --net=veth: the namespace's address takes new connections only on the
// published ports. A local user on the host and the other machine reach
// the published port 80 at the inside address but not the server's port
// 9999, which is not published; programs inside still reach 9999 at their
// own eth0 address.
func TestVethUnpublishedPorts(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	u := asTestUser(t)
	userPython := systemProgram(t, "python3")
	remote := newVethRemote(t)
	const server = `
import socket, threading
def serve(s, port):
    while True:
        c, _ = s.accept()
        c.sendall(b"port %d\n" % port)
        c.close()
for p in (80, 9999):
    s = socket.create_server(("::", p), family=socket.AF_INET6, dualstack_ipv6=True)
    threading.Thread(target=serve, args=(s, p), daemon=True).start()
for l in open("/proc/net/route").read().splitlines()[1:]:
    f = l.split()
    if f[1] == "00000000":
        gw = socket.inet_ntoa(bytes.fromhex(f[2])[::-1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.connect((gw, 9))
own = u.getsockname()[0]
try:
    c = socket.create_connection((own, 9999), timeout=5)
    print("self", own, c.recv(100).decode().strip(), flush=True)
except OSError as e:
    print("self", own, "error", e, flush=True)
print("ready", flush=True)
threading.Event().wait()
`
	r := startNsbind(t, "--net=veth", "-p", "80:0.0.0.0:0", "--", python, "-c", server)
	r.waitOutput("ready")
	_, inside := insideAddrs(t, r)
	if w := "self " + inside[0].Addr().String() + " port 9999\n"; !strings.Contains(r.stdout.String(), w) {
		t.Errorf("inside, the server's own address: want %q in:\n%s", w, r.stdout.String())
	}
	for _, p := range inside {
		addr := p.Addr().String()
		// A local user on the host.
		for _, c := range []struct {
			port string
			want string
		}{{"80", "OK port 80"}, {"9999", ""}} {
			out, err := u.command(userPython, "-c", reachProbe, "tcp|"+addr+"|"+c.port).CombinedOutput()
			if err != nil {
				t.Fatalf("probe as uid %d: %v\n%s", u.cred.Uid, err, out)
			}
			res := probeLines(string(out))["tcp|"+addr+"|"+c.port]
			if c.want != "" && res != c.want {
				t.Errorf("a local user to %s port %s: %q, want %q", addr, c.port, res, c.want)
			}
			if c.want == "" && strings.HasPrefix(res, "OK") {
				t.Errorf("a local user reached the unpublished %s port %s: %q", addr, c.port, res)
			}
		}
		// The other machine, routed through the host.
		out, _ := remote.command(python, "-c", reachProbe, "tcp|"+addr+"|9999").CombinedOutput()
		if res := probeLines(string(out))["tcp|"+addr+"|9999"]; strings.HasPrefix(res, "OK") {
			t.Errorf("the other machine reached the unpublished %s port 9999: %q", addr, res)
		}
	}
}

// The host's half holds alone: with --root the server has CAP_NET_ADMIN
// inside and flushes every rule of its namespace, yet nothing it sends
// through the veth gets further than the host side: no connection to the
// host's addresses or the other machine, no datagram.
func TestVethIsolatedRootServerFlushesRules(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	nft := needProgram(t, "nft")
	world := newOutsideWorld(t, python)
	tp, up := world.tcpPort, world.udpPort
	targets := []string{
		"tcp|gw|" + tp, "tcp|" + vethHost4 + "|" + tp, "tcp|" + vethRemote4 + "|9000",
		"udp|gw|" + up, "udp|" + vethRemote4 + "|9001", "udplite|" + vethRemote4 + "|9002",
	}
	code, stdout, stderr := runNsbind(t, append([]string{"run", "--isolated", "--root", "--net=veth", "--",
		"sh", "-c", nft + " flush ruleset && " + nft + " list ruleset | wc -l && exec \"$0\" \"$@\"", python, "-c", reachProbe}, targets...)...)
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.HasPrefix(stdout, "0\n") {
		t.Fatalf("the server did not flush its namespace's rules:\n%s", stdout)
	}
	got := probeLines(stdout)
	for _, a := range targets {
		if res := got[a]; strings.HasPrefix(a, "tcp|") && strings.HasPrefix(res, "OK") {
			t.Errorf("%s: %s: the host forwarded or accepted it", a, res)
		}
	}
	world.nothingArrived(t)
}

// The subnet lock: any local user can bind the abstract socket that once
// served as the lock; a --net=veth run as root still starts at once, and
// the user cannot open the lock file itself.
func TestVethSubnetLockSquatted(t *testing.T) {
	needRoot(t)
	u := asTestUser(t)
	python := systemProgram(t, "python3")
	startProcess(t, "the user binding the abstract socket", u.command(python, "-c", `
import socket, threading
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0nsbind-veth-subnets")
print("held", flush=True)
threading.Event().wait()
`), "held")

	start := time.Now()
	code, _, stderr := runNsbind(t, "run", "--net=veth", "-p", "80:0", "--", "true")
	if code != 0 {
		t.Fatalf("exit %d after %v; stderr:\n%s", code, time.Since(start).Round(time.Millisecond), stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the run took %v: it waited for the user's lock", d)
	}

	for _, path := range []string{"/run/nsbind/veth-subnets.lock"} {
		res, err := u.command(python, "-c", `
import fcntl, sys
try:
    f = open(sys.argv[1], "rb")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked")
except OSError as e:
    print("refused", e.errno)
`, path).CombinedOutput()
		if err != nil || !strings.HasPrefix(string(res), "refused") {
			t.Errorf("the user on %s: %v: %s", path, err, res)
		}
	}
	st, err := os.Lstat(filepath.Dir("/run/nsbind/veth-subnets.lock"))
	if err != nil || !st.IsDir() || st.Mode().Perm()&0o022 != 0 || st.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("/run/nsbind: %v, %v: want a directory of root's that only root may write", st, err)
	}
}

// ownSocketsProbe runs inside: it lists the sockets bound to 127.0.0.1 and
// ::1 (TCP listening, UDP any) from /proc/net, leaving out port 53 (a
// resolver forwarded to the host's loopback is a legitimate way out),
// writes them to DIR/ports, waits for DIR/go, then connects (TCP) or sends
// (UDP) to each straight away and prints what came back.
const ownSocketsProbe = `
import json, os, socket, sys, time
d = sys.argv[1]
def bound(name, want_state):
    out = []
    for l in open("/proc/net/" + name).read().splitlines()[1:]:
        f = l.split()
        addr, port = f[1].split(":")
        if want_state and f[3] != "0A":
            continue
        if addr in ("0100007F", "00000000000000000000000001000000"):
            host = "127.0.0.1" if len(addr) == 8 else "::1"
            if int(port, 16) != 53:
                out.append([host, int(port, 16)])
    return out
ports = {"tcp": bound("tcp", True) + bound("tcp6", True), "udp": bound("udp", False) + bound("udp6", False)}
with open(d + "/ports.tmp", "w") as f:
    json.dump(ports, f)
os.rename(d + "/ports.tmp", d + "/ports")
for _ in range(2000):
    if os.path.exists(d + "/go"):
        break
    time.sleep(0.01)
for host, port in ports["tcp"]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect((host, port))
        r = "connected: %r" % s.recv(100)
    except OSError as e:
        r = "error: %s" % e
    print("tcp", host, port, r, flush=True)
for host, port in ports["udp"]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(b"ping", (host, port))
        r = "answer: %r" % s.recv(100)
    except OSError as e:
        r = "error: %s" % e
    print("udp", host, port, r, flush=True)
`

// A program inside that connects straight to the helper's own outbound
// sockets (the redirect listener, the TPROXY socket; their ports are in
// /proc/net/tcp and udp) does not reach the host's loopback on that port:
// the helper refuses a connection or datagram whose original destination
// is its own socket. Runs rootless.
func TestOutboundOwnSocketsRefused(t *testing.T) {
	python := userProgram(t, "python3")
	requireUserns(t)
	dir := serverTempDir(t)
	os.Chmod(dir, 0o777)
	cmd := outCmd(t, nil, "--", python, "-c", ownSocketsProbe, dir)
	stdout, stderr := new(lockedBuffer), new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	done := startCmd(t, cmd)
	var ports struct{ TCP, UDP [][2]any }
	waitUntil(t, 20*time.Second, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "ports"))
		return err == nil && json.Unmarshal(b, &ports) == nil
	}, func() string { return "the probe listed no sockets; stderr:\n" + stderr.String() })
	if len(ports.TCP) == 0 || len(ports.UDP) == 0 {
		t.Fatalf("found no helper socket inside: %+v", ports)
	}
	var counters []*atomic.Int32
	for _, p := range append(ports.TCP, ports.UDP...) {
		ap := netip.AddrPortFrom(netip.MustParseAddr(p[0].(string)), uint16(p[1].(float64)))
		if len(counters) < len(ports.TCP) {
			_, n := hostTCPService(t, ap.String())
			counters = append(counters, n)
		} else {
			_, n := hostUDPService(t, ap.String())
			counters = append(counters, n)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the probe did not finish; stdout:\n%s", stdout.String())
	}
	for i, n := range counters {
		if n.Load() != 0 {
			t.Errorf("the host's service on the port of the helper's socket %d had %d clients", i, n.Load())
		}
	}
	if s := stdout.String(); strings.Contains(s, "b'host") {
		t.Errorf("the helper's own sockets led to the host's loopback:\n%s", s)
	}
	t.Logf("inside:\n%s", stdout.String())
}

// markProbe runs inside with --root (CAP_NET_ADMIN inside): it sets
// nsbind's own packet marks on its sockets and connects (TCP, the mark of
// an accepted SYN) or sends (UDP, the mark of redirected datagrams) to
// 127.0.0.1:PORT, which is no --to-host port, then prints what came back.
const markProbe = `
import socket, sys
SO_MARK = 36
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, SO_MARK, 0x6e730001)
print("mark set", flush=True)
s.settimeout(5)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    r = "connected: %r" % s.recv(100)
except OSError as e:
    r = "error: %s" % e
print("tcp", r, flush=True)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, SO_MARK, 0x6e730010)
u.settimeout(3)
try:
    u.sendto(b"ping", ("127.0.0.1", int(sys.argv[2])))
    r = "answer: %r" % u.recv(100)
except OSError as e:
    r = "error: %s" % e
print("udp", r, flush=True)
`

// With --root the server holds CAP_NET_ADMIN inside and may set nsbind's
// marks itself; it still does not reach a host loopback service on a port
// that is not forwarded (--to-host names another). Runs rootless.
func TestOutboundForgedMarkRefused(t *testing.T) {
	python := userProgram(t, "python3")
	tcpPort, conns := hostTCPService(t, "127.0.0.1:0")
	udpPort, datagrams := hostUDPService(t, "127.0.0.1:0")
	other := hostHTTP(t, "forwarded\n")
	code, out, stderr := outRun(t, nil, "--root", "--to-host", strconv.Itoa(int(other)), "--",
		python, "-c", markProbe, strconv.Itoa(int(tcpPort)), strconv.Itoa(int(udpPort)))
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(out, "mark set") {
		t.Fatalf("the server could not set SO_MARK with --root (the test proves nothing):\n%s", out)
	}
	if strings.Contains(out, "b'host") || conns.Load() != 0 || datagrams.Load() != 0 {
		t.Errorf("forged marks reached the host's loopback (%d connections, %d datagrams):\n%s", conns.Load(), datagrams.Load(), out)
	}
	for _, w := range []string{"tcp error", "udp error"} {
		if !strings.Contains(out, w) {
			t.Errorf("want %q in:\n%s", w, out)
		}
	}
}
