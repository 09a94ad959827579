package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsbind/nsbind/internal/instance"
)

// Socket activation, both ways: nsbind started by systemd's activator with
// the sockets it bound (LISTEN_FDS), and --socket-activation handing the
// host sockets to a server that speaks the protocol.

// systemPath is the PATH the unprivileged runs get: root's own may hold
// directories (and interpreters) that user cannot read.
const systemPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// systemProgram finds name on systemPath, executable by everyone (root's
// PATH may lead to a directory only root can read, as pyenv's shims), or
// skips (fails under scripts/test.sh) when it is not installed there.
func systemProgram(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range filepath.SplitList(systemPath) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 != 0 {
			return p
		}
	}
	if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
		t.Fatalf("%s is not installed in %s (scripts/test.sh installs it)", name, systemPath)
	}
	t.Skipf("%s is not installed in %s", name, systemPath)
	return ""
}

// privilegedPort is a port below 1024 on 127.0.0.1 that nothing uses now
// for network ("tcp4" or "udp4"), found by trying 900-999 (as root).
func privilegedPort(t *testing.T, network string) uint16 {
	t.Helper()
	for p := 900; p < 1000; p++ {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		var err error
		if strings.HasPrefix(network, "udp") {
			var c net.PacketConn
			if c, err = net.ListenPacket(network, addr); err == nil {
				c.Close()
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen(network, addr); err == nil {
				ln.Close()
			}
		}
		if err == nil {
			return uint16(p)
		}
	}
	t.Fatalf("no free %s port in 900-999 on 127.0.0.1", network)
	return 0
}

// activated is systemd-socket-activate (root) holding 127.0.0.1:port and
// starting, at the first client, nsbind as the test user through setpriv,
// which keeps the pid: LISTEN_PID is nsbind's, and so is Pid.
type activated struct {
	t      *testing.T
	cmd    *exec.Cmd
	stderr *lockedBuffer
}

func startActivated(t *testing.T, u *testUser, datagram bool, port uint16, nsbindArgs ...string) *activated {
	t.Helper()
	requireUserns(t)
	activate := systemProgram(t, "systemd-socket-activate")
	setpriv := systemProgram(t, "setpriv")
	args := []string{"-l", fmt.Sprintf("127.0.0.1:%d", port)}
	if datagram {
		args = append([]string{"--datagram"}, args...)
	}
	// The activator passes on only the variables named with -E.
	args = append(args, "-E", "PATH="+systemPath, "-E", "HOME="+u.dir, "-E", "TMPDIR=/tmp", "-E", "LANG=C.UTF-8",
		"--", setpriv, fmt.Sprintf("--reuid=%d", u.cred.Uid), fmt.Sprintf("--regid=%d", u.cred.Gid), "--init-groups", "--",
		u.bin, "__nsbind", "run")
	if directMode() {
		args = append(args, "--direct")
	}
	a := &activated{t: t, cmd: exec.Command(activate, append(args, nsbindArgs...)...), stderr: new(lockedBuffer)}
	a.cmd.Env = []string{"PATH=" + systemPath}
	a.cmd.Dir = u.dir
	a.cmd.Stdout, a.cmd.Stderr = a.stderr, a.stderr
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("systemd-socket-activate and nsbind output:\n%s", a.stderr.String())
		}
	})
	startCmd(t, a.cmd)
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(a.stderr.String(), "Listening on") },
		func() string { return "systemd-socket-activate does not listen:\n" + a.stderr.String() })
	return a
}

// checkNsbind checks, while it runs, that the activated process is nsbind
// (the test binary as the test user) and holds no capability on the host.
func (a *activated) checkNsbind(u *testUser) {
	t := a.t
	t.Helper()
	pid := a.cmd.Process.Pid
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || exe != u.bin {
		t.Fatalf("pid %d runs %q (%v), want nsbind %s", pid, exe, err, u.bin)
	}
	uid := strconv.Itoa(int(u.cred.Uid))
	if got := statusField(t, pid, "Uid"); got != strings.Join([]string{uid, uid, uid, uid}, "\t") {
		t.Errorf("nsbind Uid %q, want %s everywhere", got, uid)
	}
	for _, f := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
		if got := statusField(t, pid, f); got != "0000000000000000" {
			t.Errorf("nsbind %s %s on the host, want none", f, got)
		}
	}
}

// checkServer checks that the server runs as the test user on the host,
// with no capability.
func checkServer(t *testing.T, server int, u *testUser) {
	t.Helper()
	uid := strconv.Itoa(int(u.cred.Uid))
	if got := strings.Fields(statusField(t, server, "Uid")); len(got) != 4 || got[0] != uid || got[1] != uid || got[2] != uid || got[3] != uid {
		t.Errorf("server Uid %v on the host, want %s (not root)", got, uid)
	}
	if got := statusField(t, server, "CapEff"); got != "0000000000000000" {
		t.Errorf("server CapEff %s, want none", got)
	}
}

// Acceptance: root's activator binds a port below 1024, nsbind runs as an
// ordinary user with no capability, and python3 serves on port 80 inside.
func TestActivatedPrivilegedPort(t *testing.T) {
	needRootToActivate(t)
	u := asTestUser(t)
	python := systemProgram(t, "python3")
	www := filepath.Join(u.dir, "www")
	if err := os.Mkdir(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "hello.txt"), []byte("hello on a privileged port\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := privilegedPort(t, "tcp4")
	a := startActivated(t, u, false, port, "-p", fmt.Sprintf("80:%d", port), "--", python, "-m", "http.server", "--directory", www, "80")
	// The first connection makes the activator exec nsbind; it waits in
	// the socket's backlog until nsbind serves it (curl's --max-time
	// bounds the wait).
	if got := curl(t, fmt.Sprintf("http://127.0.0.1:%d/hello.txt", port)); got != "hello on a privileged port\n" {
		t.Fatalf("got %q", got)
	}
	a.checkNsbind(u)
	checkServer(t, processNamed(t, a.cmd.Process.Pid, "python3"), u)
	if !strings.Contains(a.stderr.String(), fmt.Sprintf("nsbind: 127.0.0.1:%d → :80/tcp", port)) {
		t.Errorf("no start line for the inherited socket:\n%s", a.stderr.String())
	}
}

// Acceptance: the same for UDP, with --datagram: a server on port 53
// inside answers on the activator's port.
func TestActivatedPrivilegedUDPPort(t *testing.T) {
	needRootToActivate(t)
	u := asTestUser(t)
	port := privilegedPort(t, "udp4")
	a := startActivated(t, u, true, port, "-p", fmt.Sprintf("53:%d/udp", port), "--", u.bin, "__server", "udpecho", "53")
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The first datagram makes the activator exec nsbind; a datagram
	// that reaches port 53 inside before the server listens is lost, so
	// the client asks again until an answer comes.
	buf := make([]byte, 64)
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatal("no echo within 20s")
		}
		if _, err := fmt.Fprintf(c, "ping %d", i); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && strings.HasPrefix(string(buf[:n]), "ping ") {
			break
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("reading the echo: %v", err)
		}
	}
	a.checkNsbind(u)
	checkServer(t, serverWithArg(t, a.cmd.Process.Pid, "udpecho"), u)
}

// needRootToActivate skips unless the test runs as root, which binds the
// port below 1024 and switches to the test user.
func needRootToActivate(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: systemd-socket-activate binds a port below 1024 as root and setpriv drops to the test user; scripts/test.sh runs it as root")
	}
}

// serverWithArg finds the descendant of pid with arg on its command line.
func serverWithArg(t *testing.T, pid int, arg string) int {
	t.Helper()
	var found int
	waitUntil(t, 10*time.Second, func() bool {
		for _, p := range descendants(pid) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
			for _, a := range strings.Split(string(b), "\x00") {
				if a == arg {
					found = p
					return true
				}
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no process with %q below %d", arg, pid) })
	return found
}

// withListenFDs makes prepare for startNsbindIn: nsbind started by a shell
// that hands it files at descriptors 3.. with LISTEN_FDS and
// LISTEN_FDNAMES, and LISTEN_PID set to the shell's pid (which exec
// keeps: nsbind's), or to pid if it is not empty.
func withListenFDs(files []*os.File, names, pid string) func(*exec.Cmd) {
	return func(cmd *exec.Cmd) {
		script := `export LISTEN_PID=$$; exec "$@"`
		env := append(os.Environ(), "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+names)
		if pid != "" {
			script = `exec "$@"`
			env = append(env, "LISTEN_PID="+pid)
		}
		cmd.Args = append([]string{"sh", "-c", script, "sh", cmd.Path}, cmd.Args[1:]...)
		cmd.Path = "/bin/sh"
		cmd.Env = env
		cmd.ExtraFiles = files
	}
}

// listenerFile is a TCP listener on 127.0.0.1:0 as a file to hand on, and
// its port.
func listenerFile(t *testing.T) (*os.File, uint16) {
	t.Helper()
	// Plain TCP, as a socket unit binds it (Go's listeners are MPTCP by
	// default, which nsbind refuses).
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.(*net.TCPListener)
	defer ln.Close()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// An inherited socket serves its publication (the relay, and with --direct
// the server itself): no socket of nsbind's own on that port, not even
// the ::1 of the default loopback pair, and no LISTEN_* for the server.
func TestInheritedSocketServes(t *testing.T) {
	f, port := listenerFile(t)
	r := startNsbindIn(t, t.TempDir(), withListenFDs([]*os.File{f}, "web", ""),
		"-p", fmt.Sprintf("7:%d", port), "--", os.Args[0], "__server", "echo4", "7")
	f.Close()
	if len(r.ports) != 1 || r.ports[0].HostIP != "127.0.0.1" || r.ports[0].HostPort != port {
		t.Fatalf("published %+v, want only the inherited 127.0.0.1:%d; stderr:\n%s", r.ports, port, r.stderr.String())
	}
	// Only the inherited socket listens on port: nsbind could not have
	// bound 127.0.0.1:port beside it.
	if err := echoThrough(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), 1<<20); err != nil {
		t.Fatal(err)
	}
	if ap := netip.AddrPortFrom(netip.IPv6Loopback(), port); !refused(ap) {
		t.Errorf("%s is served: nsbind bound a socket of its own beside the inherited one", ap)
	}
	server := serverWithArg(t, r.cmd.Process.Pid, "__server")
	// With --direct the server accepts on the inherited socket itself.
	if got := holdsHostSocket(t, server, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); got != directMode() {
		t.Errorf("the server holds the inherited socket: %v, want %v (--direct: %v)", got, directMode(), directMode())
	}
	noListenEnv(t, server)
}

// A LISTEN_PID that is not nsbind's is ignored, as sd_listen_fds does, and
// removed with the rest of LISTEN_*.
func TestInheritedForAnotherPid(t *testing.T) {
	f, _ := listenerFile(t)
	r := startNsbindIn(t, t.TempDir(), withListenFDs([]*os.File{f}, "web", "1"),
		"-p", "7:0", "--", os.Args[0], "__server", "echo", "7")
	f.Close()
	if len(r.ports) == 0 {
		t.Fatalf("nsbind did not start (exit %d); stderr:\n%s", r.wait(5*time.Second), r.stderr.String())
	}
	if err := echoThrough(r.addr(4), 1<<10); err != nil {
		t.Fatal(err)
	}
	noListenEnv(t, serverWithArg(t, r.cmd.Process.Pid, "__server"))
}

// noListenEnv checks that pid's environment has no LISTEN_* variable.
func noListenEnv(t *testing.T, pid int) {
	t.Helper()
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, "LISTEN_") {
			t.Errorf("the server's environment has %s", kv)
		}
	}
}

// Acceptance: an inherited socket that no -p claims fails the run before
// the server starts, with status 125 and a message naming the socket.
func TestInheritedSocketUnclaimed(t *testing.T) {
	web, webPort := listenerFile(t)
	extra, extraPort := listenerFile(t)
	marker := filepath.Join(t.TempDir(), "started")
	r := startNsbindIn(t, t.TempDir(), withListenFDs([]*os.File{web, extra}, "web:extra", ""),
		"-p", fmt.Sprintf("80:%d", webPort), "--", "sh", "-c", "touch "+marker)
	web.Close()
	extra.Close()
	if code := r.wait(15 * time.Second); code != 125 {
		t.Fatalf("exit %d, want 125; stderr:\n%s", code, r.stderr.String())
	}
	want := fmt.Sprintf("nsbind: inherited socket fd 4 \"extra\" (tcp 127.0.0.1:%d) is not published by any -p (add -p INSIDE:%d", extraPort, extraPort)
	if !strings.HasPrefix(r.stderr.String(), want) {
		t.Errorf("stderr %q, want it to start with %q", r.stderr.String(), want)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server ran (%v)", err)
	}
}

// Acceptance: --socket-activation hands lighttpd the host sockets at 3..:
// it serves on the host ports itself, and besides 0-2 the sockets are all
// it got from nsbind, on the native path (the default) as with the relay. A shell in front of lighttpd lists its descriptors
// and variables before it execs lighttpd in the same process.
func TestSocketActivationLighttpd(t *testing.T) {
	lighttpd := needProgram(t, "lighttpd")
	dir := t.TempDir()
	www := filepath.Join(dir, "www")
	os.Mkdir(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("lighttpd on its own socket\n"), 0o644)
	// Readable by whatever uid the server runs as.
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755)
	conf := filepath.Join(dir, "lighttpd.conf")
	// server.port is the port inside; with socket activation lighttpd
	// takes the sockets it is given and binds none of its own.
	os.WriteFile(conf, []byte(fmt.Sprintf(`server.document-root = %q
server.port = 80
server.systemd-socket-activation = "enable"
index-file.names = ("index.html")
`, www)), 0o644)
	script := `ls -l /proc/$$/fd; echo "pid=$$ LISTEN_PID=$LISTEN_PID LISTEN_FDS=$LISTEN_FDS LISTEN_FDNAMES=$LISTEN_FDNAMES"; exec "$@"`
	r := startNsbind(t, "--socket-activation", "-p", "80:0", "--", "sh", "-c", script, "sh", lighttpd, "-D", "-f", conf)
	for _, family := range []int{4, 6} {
		if got := curl(t, fmt.Sprintf("http://%s/", r.addr(family))); got != "lighttpd on its own socket\n" {
			t.Fatalf("IPv%d: got %q", family, got)
		}
	}
	port := r.ports[0].HostPort
	hostSockets := listeningInodes(t, port)
	if len(hostSockets) != 2 {
		t.Fatalf("host sockets on port %d: %v, want 127.0.0.1 and ::1", port, hostSockets)
	}

	// What the shell got from the exec step: 0-2 and the two sockets,
	// and LISTEN_* for its own pid.
	r.waitOutput("LISTEN_FDNAMES=")
	fds := map[int]string{}
	for _, m := range regexp.MustCompile(`(?m) (\d+) -> (.*)$`).FindAllStringSubmatch(r.stdout.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		fds[n] = m[2]
	}
	if len(fds) != 5 || !isHostSocket(hostSockets, fds[3]) || !isHostSocket(hostSockets, fds[4]) || fds[3] == fds[4] {
		t.Errorf("the server's descriptors %v, want 0, 1, 2 and the host sockets %v at 3 and 4", fds, hostSockets)
	}
	for fd := 0; fd <= 2; fd++ {
		if strings.HasPrefix(fds[fd], "socket:") || fds[fd] == "" {
			t.Errorf("descriptor %d is %q, want the standard one", fd, fds[fd])
		}
	}
	m := regexp.MustCompile(`pid=(\d+) LISTEN_PID=(\d+) LISTEN_FDS=(\S*) LISTEN_FDNAMES=(\S*)`).FindStringSubmatch(r.stdout.String())
	if m == nil || m[1] != m[2] || m[3] != "2" || m[4] != "80/tcp:80/tcp" {
		t.Errorf("the server's variables %q, want LISTEN_PID its pid, LISTEN_FDS=2, LISTEN_FDNAMES=80/tcp:80/tcp", m)
	}

	// lighttpd itself, the same process: it accepts on those very
	// sockets, and holds no other socket (no control channel of nsbind).
	server := processNamed(t, r.cmd.Process.Pid, "lighttpd")
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", server))
	if err != nil {
		t.Fatal(err)
	}
	var sockets []string
	for _, e := range entries {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", server, e.Name()))
		if err != nil {
			continue
		}
		if strings.HasPrefix(link, "socket:") || strings.Contains(link, "seccomp") {
			sockets = append(sockets, e.Name()+" "+link)
			if !isHostSocket(hostSockets, link) {
				t.Errorf("lighttpd descriptor %s is %s, not a host socket", e.Name(), link)
			}
		}
	}
	if len(sockets) != 2 {
		t.Errorf("lighttpd's sockets %v, want the two host sockets", sockets)
	}
	if got := statusField(t, server, "CapEff"); got != "0000000000000000" {
		t.Errorf("server CapEff %s, want none", got)
	}
	if got := statusField(t, server, "Seccomp"); got != "0" {
		t.Errorf("lighttpd's Seccomp %s, want 0: no bind filter with --socket-activation", got)
	}
}

// isHostSocket reports whether the descriptor link (readlink of
// /proc/PID/fd/N) is one of inodes (listeningInodes).
func isHostSocket(inodes map[string]bool, link string) bool {
	ino, ok := strings.CutPrefix(link, "socket:[")
	return ok && inodes[strings.TrimSuffix(ino, "]")]
}

// --socket-activation: flags that need the relay or another data path are
// refused before anything starts.
func TestSocketActivationFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--socket-activation", "--", "true"},
		{"--socket-activation", "--direct", "-p", "80:0", "--", "true"},
		{"--socket-activation", "--direct-udp", "-p", "53:0/udp", "--", "true"},
		{"--socket-activation", "--relay", "--direct-udp", "-p", "53:0/udp", "--", "true"},
		{"--socket-activation", "--source-address=loopback", "-p", "80:0", "--", "true"},
		{"--socket-activation", "--isolated", "-p", "80:0", "-p", "53:0/udp", "--", "true"},
		{"--socket-activation", "--relay", "--isolated", "-p", "53:0/udp", "--", "true"},
		{"--socket-activation", "--proxy-protocol", "v2", "-p", "80:0", "--", "true"},
		{"--socket-activation", "--net=veth", "-p", "80:0", "--", "true"},
	} {
		var stdout, stderr strings.Builder
		if code := run(append([]string{"run"}, args...), &stdout, &stderr); code != 125 || !strings.HasPrefix(stderr.String(), "nsbind: ") || !strings.Contains(stderr.String(), "--socket-activation") {
			t.Errorf("%q: exit %d, stderr %q; want 125 and a line about --socket-activation", args, code, stderr.String())
		}
	}
}

// A failed exec after the sockets moved to 3.. still reports why: the
// report pipe moved out of their way and back.
func TestSocketActivationExecFails(t *testing.T) {
	script := filepath.Join(serverTempDir(t), "server")
	if err := os.WriteFile(script, []byte("#!/nonexistent/interpreter\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runNsbind(t, "run", "--socket-activation", "-p", "80:0", "--", script)
	if code != 127 || !strings.Contains(stderr, "interpreter may be missing") {
		t.Fatalf("exit %d, stderr %q; want 127 and why", code, stderr)
	}
}

// activationServer is a python3 server of socket activation: before it
// opens anything it reports what it got (LISTEN_*, its open descriptors,
// each socket's type, SO_ACCEPTCONN, local address and inode, its Seccomp
// mode), then serves HTTP on every stream socket and echoes datagrams on
// every datagram socket, each on a thread of its own.
const activationServer = `import os, socket, sys, threading, http.server
fds = []
for fd in range(64):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:
        pass
seccomp = [l.split(":", 1)[1].strip() for l in open("/proc/self/status") if l.startswith("Seccomp:")][0]
print("pid=%d LISTEN_PID=%s LISTEN_FDS=%s LISTEN_FDNAMES=%s seccomp=%s fds=%s" % (os.getpid(), os.environ.get("LISTEN_PID"),
    os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_FDNAMES"), seccomp, ",".join(map(str, fds))))
socks = []
for fd in range(3, 3 + int(os.environ.get("LISTEN_FDS", "0"))):
    s = socket.socket(fileno=fd)
    kind = "stream" if s.type == socket.SOCK_STREAM else "dgram"
    print("fd=%d %s acceptconn=%d local=%s ino=%d" % (fd, kind, s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN),
        s.getsockname()[0], os.fstat(fd).st_ino))
    socks.append((kind, s))
print("reported", flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"served on a handed-over socket\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

def serve_http(s):
    srv = http.server.ThreadingHTTPServer(s.getsockname()[:2], Handler, bind_and_activate=False)
    srv.socket.close()
    srv.socket = s
    srv.serve_forever()

def echo(s):
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)

threads = [threading.Thread(target=serve_http if kind == "stream" else echo, args=(s,), daemon=True) for kind, s in socks]
for t in threads:
    t.start()
for t in threads:
    t.join()
`

// Acceptance, on every data path (the native default and the relay pass):
// --socket-activation hands the server exactly the published host sockets
// of -p 80:0 and -p 53:0/udp, the TCP ones listening, at 3.. in the order
// of the start lines, named by inside port; no catch-all of the native
// path, no bind filter (Seccomp 0), and the server answers on the host
// ports of both loopback families itself. On the native path the server
// used to get the [::] catch-all, a 127.0.0.1 socket that never listened
// and a bind filter, and lighttpd spun on the socket that did not listen.
func TestSocketActivationSocketsListen(t *testing.T) {
	python := systemProgram(t, "python3")
	script := filepath.Join(serverTempDir(t), "server.py")
	if err := os.WriteFile(script, []byte(activationServer), 0o644); err != nil {
		t.Fatal(err)
	}
	name := instanceName("activated")
	r := startNsbind(t, "--socket-activation", "--stats", "--name", name, "-p", "80:0", "-p", "53:0/udp", "--", python, script)
	r.waitOutput("reported\n")
	out := r.stdout.String()

	// The published sockets, in the order of the ports file (and of the
	// start lines): the default pair of each spec.
	type want struct{ kind, local string }
	var wants []want
	var names []string
	for _, p := range r.ports {
		kind := "stream"
		if p.Proto == "udp" {
			kind = "dgram"
		}
		wants = append(wants, want{kind, p.HostIP})
		names = append(names, fmt.Sprintf("%d/%s", p.InsidePort, p.Proto))
	}
	if len(wants) != 4 || strings.Join(names, ":") != "80/tcp:80/tcp:53/udp:53/udp" {
		t.Fatalf("published %+v, want 127.0.0.1 and ::1 for 80/tcp and for 53/udp", r.ports)
	}
	m := regexp.MustCompile(`pid=(\d+) LISTEN_PID=(\S*) LISTEN_FDS=(\S*) LISTEN_FDNAMES=(\S*) seccomp=(\S*) fds=(\S*)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no report in %q", out)
	}
	if m[1] != m[2] || m[3] != "4" || m[4] != "80/tcp:80/tcp:53/udp:53/udp" {
		t.Errorf("the server's variables LISTEN_PID=%s (its pid %s) LISTEN_FDS=%s LISTEN_FDNAMES=%s, want its pid, 4 and 80/tcp:80/tcp:53/udp:53/udp",
			m[2], m[1], m[3], m[4])
	}
	if m[5] != "0" {
		t.Errorf("the server's Seccomp is %s, want 0: no bind filter with --socket-activation", m[5])
	}
	if m[6] != "0,1,2,3,4,5,6" {
		t.Errorf("the server's descriptors %s, want 0-2 and the four sockets", m[6])
	}

	// Each descriptor is the host socket of its publication: the same
	// inode as the one bound on the host port, listening if TCP.
	tcpPort, udpPort := r.ports[0].HostPort, r.ports[2].HostPort
	host := listeningInodes(t, tcpPort)
	for ino := range listeningInodes(t, udpPort) {
		host[ino] = true
	}
	fdLines := regexp.MustCompile(`(?m)^fd=(\d+) (\w+) acceptconn=(\d) local=(\S+) ino=(\d+)$`).FindAllStringSubmatch(out, -1)
	if len(fdLines) != len(wants) {
		t.Fatalf("the server reports %d sockets, want %d:\n%s", len(fdLines), len(wants), out)
	}
	for i, f := range fdLines {
		w := wants[i]
		if f[1] != strconv.Itoa(3+i) || f[2] != w.kind || f[4] != w.local {
			t.Errorf("descriptor %s is %s %s, want %d %s %s", f[1], f[2], f[4], 3+i, w.kind, w.local)
		}
		if w.kind == "stream" && f[3] != "1" {
			t.Errorf("descriptor %s (%s) has SO_ACCEPTCONN %s, want 1: a TCP socket handed over must listen", f[1], f[4], f[3])
		}
		if !host[f[5]] {
			t.Errorf("descriptor %s (%s) is socket %s, not one bound on host port %d or %d/udp (%v)", f[1], f[4], f[5], tcpPort, udpPort, host)
		}
	}
	server := processNamed(t, r.cmd.Process.Pid, "python3")
	if got := statusField(t, server, "Seccomp"); got != "0" {
		t.Errorf("server Seccomp %s, want 0", got)
	}

	// The server answers on the host ports itself, both families.
	for _, p := range r.ports {
		ap := netip.AddrPortFrom(netip.MustParseAddr(p.HostIP), p.HostPort)
		if p.Proto == "tcp" {
			if got := curl(t, fmt.Sprintf("http://%s/", ap)); got != "served on a handed-over socket\n" {
				t.Errorf("%s: got %q", ap, got)
			}
			continue
		}
		if err := udpEchoes(ap); err != nil {
			t.Errorf("%s/udp: %v", ap, err)
		}
	}

	// What nsbind says of the run: the server holds every socket
	// (nsbind ps, port ls), and --stats counts the two connections it
	// accepted itself, on the first line of their port.
	ii, ok := findInstance(psList(t, nil, ""), name)
	if !ok || len(ii.Sockets) != len(r.ports) {
		t.Fatalf("nsbind ps: %+v (found %v), want the %d published sockets", ii, ok, len(r.ports))
	}
	for _, s := range ii.Sockets {
		if s.Path != instance.PathNative {
			t.Errorf("nsbind ps: %s → :%d/%s is %s, want %s: the server holds it", s.Host, s.Inside, s.Proto, s.Path, instance.PathNative)
		}
	}
	if code := r.stop(10 * time.Second); code != 128+int(syscall.SIGTERM) && code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	first := fmt.Sprintf("nsbind: 127.0.0.1:%d → :80/tcp: 2 connections, 0 failed, 0 bytes in, 0 bytes out (2 accepted by the server itself, their bytes not counted)\n", tcpPort)
	if !strings.Contains(r.stderr.String(), first) {
		t.Errorf("--stats: no line %q in:\n%s", first, r.stderr.String())
	}
}

// udpEchoes sends a datagram to ap and waits for it to come back, asking
// again a few times (a datagram may be lost), for at most 5 seconds.
func udpEchoes(ap netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		msg := fmt.Sprintf("ping %d", i)
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == msg {
			return nil
		}
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			return err
		}
	}
	return errors.New("no echo within 5s")
}

// Acceptance: a socket nsbind inherited (LISTEN_FDS) goes on to the server
// with --socket-activation, on every data path: the very socket, at 3,
// listening, named by its -p, with no socket of nsbind's own beside it
// and no bind filter.
func TestInheritedSocketActivation(t *testing.T) {
	python := systemProgram(t, "python3")
	script := filepath.Join(serverTempDir(t), "server.py")
	if err := os.WriteFile(script, []byte(activationServer), 0o644); err != nil {
		t.Fatal(err)
	}
	f, port := listenerFile(t)
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	r := startNsbindIn(t, serverTempDir(t), withListenFDs([]*os.File{f}, "web", ""),
		"--socket-activation", "-p", fmt.Sprintf("80:%d", port), "--", python, script)
	f.Close()
	r.waitOutput("reported\n")
	out := r.stdout.String()
	want := fmt.Sprintf("LISTEN_FDS=1 LISTEN_FDNAMES=80/tcp seccomp=0 fds=0,1,2,3\nfd=3 stream acceptconn=1 local=127.0.0.1 ino=%d\n", st.Ino)
	if !strings.Contains(out, want) {
		t.Errorf("the server reports\n%s\nwant\n%s", out, want)
	}
	if got := curl(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); got != "served on a handed-over socket\n" {
		t.Errorf("got %q", got)
	}
	if ap := netip.AddrPortFrom(netip.IPv6Loopback(), port); !refused(ap) {
		t.Errorf("%s is served: nsbind bound a socket of its own beside the inherited one", ap)
	}
}
