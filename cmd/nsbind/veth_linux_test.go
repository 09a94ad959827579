package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needRoot skips a --net=veth test when the test does not run as root:
// the veth path is the privileged one. scripts/test.sh runs the suite as
// root too, where these tests run.
func needRoot(t *testing.T) {
	t.Helper()
	if relayMode() {
		t.Skip("--net=veth is a data path of its own: run in the default pass only")
	}
	if os.Getuid() != 0 {
		t.Skip("--net=veth needs root (CAP_NET_ADMIN on the host); scripts/test.sh runs this as root")
	}
}

// vethRemote is "another machine" for the --net=veth tests: a network
// namespace made by the test, joined to the host by a veth pair with
// documentation addresses (other tests use 198.51.100.0/24):
//
//	forwarding (the usual one): host 203.0.113.1/25, 2001:db8:9::1/64;
//	                            remote 203.0.113.2, 2001:db8:9::2
//	not forwarding:             host 203.0.113.129/25, 2001:db8:9:1::1/64;
//	                            remote 203.0.113.130, 2001:db8:9:1::2
//
// The host side of the first forwards what it receives
// (net.ipv4.conf.IF.forwarding=1, net.ipv6.conf.IF.force_forwarding=1):
// that is the test's own interface, gone with it, so the kernel may route
// the test's clients into nsbind's namespace without any global switch.
// The second keeps the host's defaults (no forwarding), as eth0 here.
type vethRemote struct {
	netnsHost
	hostSide     string
	host4, host6 string
	addr4, addr6 string
}

const (
	vethRemote4, vethRemote6 = "203.0.113.2", "2001:db8:9::2"
	vethHost4, vethHost6     = "203.0.113.1", "2001:db8:9::1"
)

func newVethRemote(t *testing.T) *vethRemote { return newVethRemoteWith(t, true) }

func newVethRemoteWith(t *testing.T, forwarding bool) *vethRemote {
	t.Helper()
	prefix := "nsbv"
	h := &vethRemote{host4: vethHost4, host6: vethHost6, addr4: vethRemote4, addr6: vethRemote6}
	if !forwarding {
		prefix = "nsbw"
		h = &vethRemote{host4: "203.0.113.129", host6: "2001:db8:9:1::1", addr4: "203.0.113.130", addr6: "2001:db8:9:1::2"}
	}
	h.name, h.hostSide = newTestNetns(t, prefix, h.host4, h.addr4, h.host6, h.addr6, forwarding)
	return h
}

// serve runs the peer server on port in the remote machine until the test
// ends, and waits until it listens.
func (h *vethRemote) serve(t *testing.T, python string, port int) {
	t.Helper()
	h.start(t, "listening", python, "-c", peerScript, strconv.Itoa(port))
}

// vethName is the host side of the veth of the nsbind run r.
func vethName(r *nsbindRun) string { return "nsb" + strconv.Itoa(r.cmd.Process.Pid) }

// Acceptance 1: "nsbind run --net=veth -p 80:0.0.0.0:PORT python3 -m
// http.server 80": a client on another machine reaches the server through
// the host's address, through the kernel (the run's DNAT rule counts it),
// and the server logs that client's own address; curl to 127.0.0.1:PORT
// on the host (the relay) answers too.
func TestVethRemoteClient(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	curl := needProgram(t, "curl")
	needProgram(t, "nft")
	remote := newVethRemote(t)
	r := startNsbind(t, "--net=veth", "-p", "80:0.0.0.0:0", "--", python, "-m", "http.server", "80")
	r.waitOutput("Serving HTTP")
	port := r.addr(4).Port()

	out, err := remote.command(curl, "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
		fmt.Sprintf("http://%s:%d/", vethHost4, port)).CombinedOutput()
	if err != nil || string(out) != "200" {
		t.Fatalf("curl from the remote machine: %v: %s", err, out)
	}
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(r.stderr.String(), vethRemote4+" - - [") },
		func() string { return "the server did not log the client " + vethRemote4 + ":\n" + r.stderr.String() })
	if n := dnatPackets(t, vethName(r)); n == 0 {
		t.Errorf("the DNAT rule counted no packet: the connection did not take the kernel path")
	}

	out, err = exec.Command(curl, "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
		fmt.Sprintf("http://127.0.0.1:%d/", port)).CombinedOutput()
	if err != nil || string(out) != "200" {
		t.Fatalf("curl to 127.0.0.1:%d on the host: %v: %s", port, err, out)
	}
	waitUntil(t, 10*time.Second, func() bool { return strings.Contains(r.stderr.String(), "127.0.0.1 - - [") },
		func() string { return "the server did not log the loopback client:\n" + r.stderr.String() })
}

// dnatPackets sums the packet counters of the DNAT rules in the run's
// table.
func dnatPackets(t *testing.T, table string) int {
	t.Helper()
	out, err := exec.Command("nft", "list", "chain", "inet", table, "prerouting").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list chain inet %s prerouting: %v\n%s", table, err, out)
	}
	n := 0
	for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(string(out), -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// peerScript is a server for [::]:80 (both families) that answers each
// connection with the client's address and the address it was accepted on.
const peerScript = `import socket, sys
port = int(sys.argv[1]) if len(sys.argv) > 1 else 80
s = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
print("listening", flush=True)
while True:
    c, a = s.accept()
    u = lambda x: x[7:] if x.startswith("::ffff:") else x
    c.sendall(("%s %s\n" % (u(a[0]), u(c.getsockname()[0]))).encode())
    c.close()`

// askScript connects to ARGV[1]:ARGV[2] and prints the server's answer and
// its own address.
const askScript = `import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print(s.recv(200).decode().strip(), s.getsockname()[0])`

func unmapped(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().String()
}

// insideAddrs reads the addresses nsbind printed for the inside of its
// veth: "veth NAME (HOST4, HOST6) ⇄ eth0 inside (IN4/30, IN6/64)".
func insideAddrs(t *testing.T, r *nsbindRun) (string, []netip.Prefix) {
	t.Helper()
	m := regexp.MustCompile(`veth (\S+) \(([^)]*)\) ⇄ eth0 inside \(([^)]*)\)`).FindStringSubmatch(r.stderr.String())
	if m == nil {
		t.Fatalf("nsbind printed no veth line:\n%s", r.stderr.String())
	}
	var ps []netip.Prefix
	for _, s := range strings.Split(m[3], ", ") {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return m[1], ps
}

// Acceptance 2: two concurrent --net=veth runs get different subnets and
// interface names, and both serve a remote client over IPv4 and IPv6
// through the kernel (the server accepts on its own eth0 address, not on
// loopback as behind the relay) while seeing the client's own address.
// The second run chooses its subnets with --subnet and publishes on one
// host address of each family rather than on [::].
func TestVethTwoRuns(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	remote := newVethRemote(t)
	a := startNsbind(t, "--net=veth", "-p", "80:[::]:0", "--", python, "-c", peerScript)
	b := startNsbind(t, "--net=veth", "--subnet", "10.213.250.0/29", "--subnet", "fd6e:7362:6e64:fa::/64",
		"-p", "80:"+vethHost4+":0", "-p", "80:["+vethHost6+"]:0", "--", python, "-c", peerScript)
	nameA, insideA := insideAddrs(t, a)
	nameB, insideB := insideAddrs(t, b)
	if nameA == nameB || nameA != vethName(a) || nameB != vethName(b) {
		t.Errorf("veth names %q and %q, want nsb and each nsbind's pid (%s, %s)", nameA, nameB, vethName(a), vethName(b))
	}
	if want := []netip.Prefix{netip.MustParsePrefix("10.213.250.2/29"), netip.MustParsePrefix("fd6e:7362:6e64:fa::2/64")}; !slices.Equal(insideB, want) {
		t.Errorf("--subnet run got %v, want %v", insideB, want)
	}
	for _, p := range insideA {
		for _, q := range insideB {
			if p.Overlaps(q) {
				t.Errorf("the runs' subnets overlap: %s and %s", p, q)
			}
		}
	}
	for _, run := range []struct {
		r      *nsbindRun
		inside []netip.Prefix
	}{{a, insideA}, {b, insideB}} {
		run.r.waitOutput("listening")
		for i, host := range []string{vethHost4, vethHost6} {
			port := publishedPort(t, run.r, netip.MustParseAddr(host))
			out, err := remote.command(python, "-c", askScript, host, fmt.Sprint(port)).CombinedOutput()
			if err != nil {
				t.Fatalf("client to %s:%d: %v\n%s", host, port, err, out)
			}
			f := strings.Fields(string(out))
			if len(f) != 3 {
				t.Fatalf("client output %q", out)
			}
			client, accepted, own := unmapped(f[0]), unmapped(f[1]), f[2]
			if client != own {
				t.Errorf("via %s: the server saw %s, the client is %s", host, client, own)
			}
			if want := run.inside[i].Addr().String(); accepted != want {
				t.Errorf("via %s: the server accepted on %s, want its eth0 address %s (the kernel path)", host, accepted, want)
			}
		}
	}
}

// publishedPort is the host port of r's socket that takes clients to host.
func publishedPort(t *testing.T, r *nsbindRun, host netip.Addr) uint16 {
	t.Helper()
	for _, p := range r.ports {
		if a := netip.MustParseAddr(p.HostIP); a == host || a.IsUnspecified() && (a.Is6() || host.Is4()) {
			return p.HostPort
		}
	}
	t.Fatalf("no socket published for %s: %+v", host, r.ports)
	return 0
}

// hostSnapshot is what acceptance 3 compares: the host's interfaces,
// addresses, routes and nftables ruleset.
type hostSnapshot map[string][]string

var snapshotCommands = [][]string{
	{"ip", "-o", "link"},
	{"ip", "-o", "addr"},
	{"ip", "route"},
	{"ip", "-6", "route"},
	{"nft", "list", "ruleset"},
}

func takeSnapshot(t *testing.T) hostSnapshot {
	t.Helper()
	s := hostSnapshot{}
	for _, c := range snapshotCommands {
		out, err := exec.Command(c[0], c[1:]...).Output()
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(c, " "), err)
		}
		key := strings.Join(c, " ")
		s[key] = strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	}
	return s
}

var (
	linkDev  = regexp.MustCompile(`^\d+: ([^:@ ]+)`)
	routeDev = regexp.MustCompile(` dev ([^ ]+)`)
)

// device is the interface a line of ip's output is about ("" for none).
func device(line string) string {
	if m := linkDev.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	if m := routeDev.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

// diff compares two snapshots. Other tests of other packages and
// worktrees run on this host at the same time and add and remove
// interfaces of their own: lines of an interface that is in only one of
// the snapshots and is not the run's are left out. Everything else must
// be equal, line for line: the lines of every interface that was there
// before and still is, the lines without an interface, and the whole
// nftables ruleset. No line may name the run's interface or addresses.
func (s hostSnapshot) diff(after hostSnapshot, ours string, addrs []string) []string {
	devs := func(h hostSnapshot) map[string]bool {
		m := map[string]bool{}
		for _, l := range h["ip -o link"] {
			if d := device(l); d != "" {
				m[d] = true
			}
		}
		return m
	}
	before, now := devs(s), devs(after)
	keep := func(key, line string) bool {
		if key == "nft list ruleset" {
			return true
		}
		d := device(line)
		return d == "" || d == ours || (before[d] && now[d])
	}
	var out []string
	for _, c := range snapshotCommands {
		key := strings.Join(c, " ")
		var a, b []string
		for _, l := range s[key] {
			if keep(key, l) {
				a = append(a, l)
			}
		}
		for _, l := range after[key] {
			if keep(key, l) {
				b = append(b, l)
			}
			for _, x := range append([]string{ours}, addrs...) {
				if strings.Contains(l, x) {
					out = append(out, fmt.Sprintf("%s still shows %q: %s", key, x, l))
				}
			}
		}
		if !slices.Equal(a, b) {
			out = append(out, fmt.Sprintf("%s differs:\nbefore:\n%s\nafter:\n%s", key, strings.Join(a, "\n"), strings.Join(b, "\n")))
		}
	}
	return out
}

// Acceptance 3: within a second of kill -KILL of nsbind, the host shows
// the same interfaces, addresses, routes and nftables ruleset as before the
// run: the kernel drops the owned table with nsbind's netlink socket, and
// the veth with the run's namespace when the helper dies of nsbind's death.
func TestVethKillCleanup(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	needProgram(t, "nft")
	newVethRemote(t) // so that the run has DNAT rules and sets too
	before := takeSnapshot(t)
	r := startNsbind(t, "--net=veth", "-p", "80:[::]:0", "--", python, "-c", peerScript)
	r.waitOutput("listening")
	name, inside := insideAddrs(t, r)
	var addrs []string
	for _, p := range inside {
		addrs = append(addrs, p.Masked().Addr().String()+"/", p.Addr().String())
	}
	during := takeSnapshot(t)
	if d := before.diff(during, name, addrs); len(d) == 0 {
		t.Fatalf("the run changed nothing the snapshots show: the test cannot see its veth or table")
	}
	inRun := descendants(r.cmd.Process.Pid)

	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	r.wait(10 * time.Second)
	var d []string
	for {
		d = before.diff(takeSnapshot(t), name, addrs)
		if len(d) == 0 {
			break
		}
		if time.Since(killed) > time.Second {
			t.Fatalf("a second after SIGKILL the host still differs:\n%s", strings.Join(d, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("host as before %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	for _, p := range inRun {
		if alive(p) {
			t.Errorf("process %d of the run survived nsbind's SIGKILL", p)
		}
	}
}

// Signals and the exit status work as with the relay, and a normal end
// removes the veth and the table before nsbind exits.
func TestVethNormalExitCleanup(t *testing.T) {
	needRoot(t)
	r := startNsbind(t, "--net=veth", "-p", "80:0", "--", os.Args[0], "__server", "sigwait")
	r.waitOutput("ready")
	name := vethName(r)
	if out, err := exec.Command("ip", "-o", "link", "show", name).CombinedOutput(); err != nil {
		t.Fatalf("no veth %s during the run: %v\n%s", name, err, out)
	}
	if code := r.stop(10 * time.Second); code != 42 {
		t.Fatalf("exit status %d, want the server's 42; stderr:\n%s", code, r.stderr.String())
	}
	if out, err := exec.Command("ip", "-o", "link", "show", name).CombinedOutput(); err == nil {
		t.Errorf("the veth %s is still there after nsbind exited: %s", name, out)
	}
	if out, err := exec.Command("nft", "list", "table", "inet", name).CombinedOutput(); err == nil {
		t.Errorf("the table inet %s is still there after nsbind exited:\n%s", name, out)
	}
}

// Outbound with --net=veth works as in relay mode: a connection from inside
// leaves through a socket nsbind makes on the host, so it reaches every
// machine the host reaches, over IPv4 and IPv6, also through interfaces
// that do not forward, and the other machine sees the host's address.
func TestVethOutbound(t *testing.T) {
	needRoot(t)
	python := needProgram(t, "python3")
	fwd := newVethRemote(t)
	blocked := newVethRemoteWith(t, false)
	fwd.serve(t, python, 9000)
	blocked.serve(t, python, 9000)
	const client = `import socket, sys, time
for host in sys.argv[1:]:
    start = time.monotonic()
    try:
        s = socket.create_connection((host, 9000), timeout=10)
        print(host, "ok", s.recv(200).decode().split()[0])
    except OSError as e:
        print(host, "errno", e.errno, "after %ds" % (time.monotonic() - start))`
	code, stdout, stderr := runNsbind(t, "run", "--net=veth", "--", python, "-c", client,
		fwd.addr4, fwd.addr6, blocked.addr4, blocked.addr6)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	for _, w := range []string{
		fwd.addr4 + " ok " + fwd.host4 + "\n",
		fwd.addr6 + " ok " + fwd.host6 + "\n",
		blocked.addr4 + " ok " + blocked.host4 + "\n",
		blocked.addr6 + " ok " + blocked.host6 + "\n",
	} {
		if !strings.Contains(stdout, w) {
			t.Errorf("inside: want %q in:\n%s", w, stdout)
		}
	}
	if !strings.Contains(stderr, blocked.hostSide+".forwarding=0") {
		t.Errorf("nsbind did not say which interfaces do not forward:\n%s", stderr)
	}
}

// Acceptance 4: without CAP_NET_ADMIN on the host (an ordinary user),
// --net=veth fails at once with exit status 125, saying what is missing and
// that the default needs no privilege; the server never starts.
func TestVethNeedsNetAdmin(t *testing.T) {
	if relayMode() {
		t.Skip("--net=veth is a data path of its own: run in the default pass only")
	}
	dir := t.TempDir()
	bin := os.Args[0]
	var cred *syscall.Credential
	if os.Getuid() == 0 {
		u := asTestUser(t)
		dir, bin, cred = u.dir, u.bin, u.cred
	}
	marker := filepath.Join(dir, "started")
	cmd := exec.Command(bin, "__nsbind", "run", "--net=veth", "-p", "80:0", "--", "touch", marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatal(err)
	}
	if code != exitFailed {
		t.Fatalf("exit status %d, want 125; output:\n%s", code, out)
	}
	for _, want := range []string{"nsbind: --net=veth needs CAP_NET_ADMIN", "--net=relay needs no privilege"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 0 {
		t.Errorf("want one line, got %d:\n%s", n+1, out)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the server ran")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to fail", d)
	}
}

// Bad --net and --subnet values stop nsbind with 125 before anything
// starts; as root, a --subnet the host already uses too.
func TestVethBadFlags(t *testing.T) {
	if relayMode() {
		t.Skip("--net=veth is a data path of its own: run in the default pass only")
	}
	cases := []struct {
		name string
		args []string
		want string
		root bool
	}{
		{"unknown net", []string{"--net=tap"}, `invalid --net "tap"`, false},
		{"subnet without veth", []string{"--subnet", "10.1.0.0/30"}, "--subnet is for --net=veth", false},
		{"subnet too small", []string{"--net=veth", "--subnet", "10.1.0.0/31"}, "use a /30 or larger", false},
		{"subnet in use", []string{"--net=veth", "--subnet", "127.0.0.0/30"}, "overlaps 127.0.0.0/8", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			run := runInProcess
			if c.root {
				needRoot(t) // this one goes as far as choosing the subnet
				run = runNsbind
			}
			args := append(append([]string{"run"}, c.args...), "-p", "80:0", "--", "true")
			code, _, stderr := run(t, args...)
			if code != exitFailed || !strings.Contains(stderr, c.want) || !strings.HasPrefix(stderr, "nsbind: ") {
				t.Errorf("exit %d, stderr %q; want 125 and %q", code, stderr, c.want)
			}
		})
	}
}
