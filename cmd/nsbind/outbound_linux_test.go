package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// connectProbe is a client for programs inside: it connects to HOST PORT
// and prints "OK" or the errno's name (ECONNREFUSED, ENETUNREACH...), then
// the seconds it took.
const connectProbe = `
import errno, socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20).close()
    r = "OK"
except OSError as e:
    r = errno.errorcode.get(e.errno, str(e))
print(r, round(time.monotonic() - t, 3))
`

// probeResult runs connectProbe's output apart.
func probeResult(t *testing.T, out string) (string, float64) {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 2 {
		t.Fatalf("connect probe printed %q", out)
	}
	secs, _ := strconv.ParseFloat(f[len(f)-1], 64)
	return f[len(f)-2], secs
}

// failsAtOnce reports, with the message to give if not, whether
// connectProbe's output out says the connect failed with want within two
// seconds.
func failsAtOnce(t *testing.T, what, out, want string) (bool, string) {
	t.Helper()
	r, secs := probeResult(t, out)
	return r == want && secs <= 2, fmt.Sprintf("%s: %s after %vs, want %s at once", what, r, secs, want)
}

// userProgram checks that name is installed and returns the name to run
// it by: programs inside run as the test user, who finds them on its own
// PATH (root's may lead to a directory only root can read, as pyenv's
// shims).
func userProgram(t *testing.T, name string) string {
	t.Helper()
	needProgram(t, name)
	return name
}

// outCmd is the command "nsbind run ARGS..." as the test user u (nil: as
// the test itself).
func outCmd(t *testing.T, u *testUser, args ...string) *exec.Cmd {
	t.Helper()
	requireUserns(t)
	cmd := exec.Command(os.Args[0], append([]string{"__nsbind", "run"}, args...)...)
	if u != nil {
		u.prepare(cmd)
	}
	return cmd
}

// outRun runs "nsbind run ARGS..." to the end, as the test user u (nil: as
// the test itself), and returns its status, stdout and stderr.
func outRun(t *testing.T, u *testUser, args ...string) (int, string, string) {
	t.Helper()
	return runCmdWithin(t, outCmd(t, u, args...), 2*time.Minute)
}

// hostHTTP serves body on 127.0.0.1:0 of the host for the test's life.
func hostHTTP(t *testing.T, body string) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// hostUDPEcho answers each datagram on 127.0.0.1:0 of the host with
// "echo: " and the datagram.
func hostUDPEcho(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			c.WriteToUDPAddrPort(append([]byte("echo: "), buf[:n]...), from)
		}
	}()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

// Acceptance 2: with --to-host, localhost:PORT inside is the host's
// localhost:HOSTPORT, in the same family, TCP and UDP; a closed host port is
// refused at once inside. Runs rootless.
func TestToHost(t *testing.T) {
	curlBin := userProgram(t, "curl")
	python := userProgram(t, "python3")
	httpPort := hostHTTP(t, "hello from the host\n")
	udpPort := hostUDPEcho(t)
	closed := freePort(t)
	script := fmt.Sprintf(`
%[1]s -sS --max-time 10 http://127.0.0.1:5432/
%[1]s -sS --max-time 10 http://127.0.0.1:%[2]d/
%[3]s -c '%[4]s' ::1 5432
%[3]s -c '%[4]s' 127.0.0.1 5433
%[3]s -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10); s.sendto(b"ping", ("127.0.0.1", 5353)); print(s.recv(100).decode())'
`, curlBin, httpPort, python, connectProbe)
	code, out, stderr := outRun(t, nil,
		"--to-host", fmt.Sprintf("5432:%d", httpPort), "--to-host", strconv.Itoa(int(httpPort)),
		"--to-host", fmt.Sprintf("5433:%d", closed), "--to-host", fmt.Sprintf("5353:%d/udp", udpPort),
		"--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("want 5 lines of output, got:\n%s\nstderr:\n%s", out, stderr)
	}
	for i := range 2 {
		if lines[i] != "hello from the host" {
			t.Errorf("line %d: %q, want the host's answer", i, lines[i])
		}
	}
	// The host server listens on 127.0.0.1 only: ::1 inside is the host's
	// ::1, where nothing listens, so it is refused as it would be there.
	if ok, msg := failsAtOnce(t, "[::1]:5432 inside", lines[2], "ECONNREFUSED"); !ok {
		t.Error(msg)
	}
	if ok, msg := failsAtOnce(t, "closed host port", lines[3], "ECONNREFUSED"); !ok {
		t.Error(msg)
	}
	if lines[4] != "echo: ping" {
		t.Errorf("UDP: %q, want the host's echo", lines[4])
	}
}

// Acceptance 5: with --isolated a connect to any outside address fails at
// once with ENETUNREACH. Runs rootless.
func TestIsolated(t *testing.T) {
	python := userProgram(t, "python3")
	code, out, stderr := outRun(t, nil, "--isolated", "--", python, "-c", connectProbe, "198.51.100.2", "80")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if ok, msg := failsAtOnce(t, "isolated", out, "ENETUNREACH"); !ok {
		t.Fatal(msg)
	}
}

// Bad outbound flags stop nsbind before anything starts.
func TestOutboundFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad to-host", []string{"--to-host", "5432:x"}, `invalid --to-host "5432:x"`},
		{"to-host and isolated", []string{"--isolated", "--to-host", "5432"}, "contradict"},
		{"to-host on a published port", []string{"-p", "5432:0", "--to-host", "5432"}, "both use port 5432/tcp inside"},
		{"missing resolv.conf", []string{"--resolv-conf", "/nonexistent/resolv.conf"}, "--resolv-conf: open /nonexistent/resolv.conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runInProcess(t, append(append([]string{"run"}, tt.args...), "--", "true")...)
			if code != exitFailed || !strings.Contains(stderr, tt.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("exit %d, stderr %q; want %d and one line with %q", code, stderr, exitFailed, tt.want)
			}
		})
	}
}

// outRemote is a "remote host" for the outbound tests: a network namespace
// joined to the host by a veth pair. The host side has 198.51.100.1/25 and
// 2001:db8::1/64, the remote side .2 and ::2 (documentation addresses,
// apart from those of the other tests).
type outRemote struct {
	netnsHost
}

const (
	outRemote4, outRemote6 = "198.51.100.2", "2001:db8::2"
)

// newOutRemote makes the remote host; the namespace, the veth pair and
// whatever the test started in it are removed when the test ends. It needs
// root and the ip tool.
func newOutRemote(t *testing.T) *outRemote {
	t.Helper()
	name, _ := newTestNetns(t, "nsbo", "198.51.100.1", outRemote4, "2001:db8::1", outRemote6, false)
	return &outRemote{netnsHost{name}}
}

// startHTTP serves dir with python3's http.server on port of the remote
// host, both families, and waits until it answers.
func (h *outRemote) startHTTP(t *testing.T, dir string, port int) {
	t.Helper()
	h.start(t, "", needProgram(t, "python3"), "-m", "http.server", "--bind", "::", "--directory", dir, strconv.Itoa(port))
	waitUntil(t, 15*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(outRemote4, strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, func() string { return "http.server in the remote host does not answer" })
}

// startDNS runs dnsmasq on addr:port that answers name with answer,
// started by start (as startProcess, from the command line), and waits
// until it answers.
func startDNS(t *testing.T, start func(t *testing.T, name string, args ...string), addrs string, port int, name, answer string) {
	t.Helper()
	dnsmasq := needProgram(t, "dnsmasq")
	dig := userProgram(t, "dig")
	start(t, dnsmasq, "--keep-in-foreground", "--no-resolv", "--no-hosts", "--user=root", "--pid-file=",
		"--bind-interfaces", "--listen-address="+addrs, "--port="+strconv.Itoa(port),
		"--address=/"+name+"/"+answer, "--log-facility=-")
	first := strings.Split(addrs, ",")[0]
	waitUntil(t, 15*time.Second, func() bool {
		out, _ := exec.Command(dig, "+short", "+time=1", "+tries=1", "@"+first, "-p", strconv.Itoa(port), name).Output()
		return strings.TrimSpace(string(out)) == answer
	}, func() string { return "dnsmasq does not answer" })
}

// Acceptance 1, 4 and 5 against a remote host: HTTP over IPv4 and IPv6 and
// DNS over UDP reach it from inside, a closed port is refused at once, and
// --isolated cuts it off. nsbind runs as the unprivileged test user.
func TestOutboundRemote(t *testing.T) {
	u := asTestUser(t)
	curlBin := userProgram(t, "curl")
	dig := userProgram(t, "dig")
	python := userProgram(t, "python3")
	h := newOutRemote(t)
	www := filepath.Join(u.dir, "www")
	os.Mkdir(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from the remote host\n"), 0o644)
	h.startHTTP(t, www, 8080)
	startDNS(t, func(t *testing.T, name string, args ...string) { h.start(t, "", name, args...) }, outRemote4+","+outRemote6, 5353, "remote.nsbind.test", "198.51.100.77")

	t.Run("http", func(t *testing.T) {
		for _, url := range []string{"http://" + outRemote4 + ":8080/", "http://[" + outRemote6 + "]:8080/"} {
			code, out, stderr := outRun(t, u, "--log-level", "debug", "--", curlBin, "-sS", "-g", "--max-time", "10", url)
			if code != 0 || out != "hello from the remote host\n" {
				t.Fatalf("%s: exit %d, %q\nstderr:\n%s", url, code, out, stderr)
			}
			if !strings.Contains(stderr, "outbound connection open") || !regexp.MustCompile(`outbound totals conns=1 failed=0 bytes_out=[1-9]\d* bytes_in=[1-9]\d*`).MatchString(stderr) {
				t.Errorf("%s: no outbound connection counted in the debug log:\n%s", url, stderr)
			}
		}
	})
	t.Run("dns over udp", func(t *testing.T) {
		for _, server := range []string{outRemote4, outRemote6} {
			code, out, stderr := outRun(t, u, "--", dig, "+short", "+time=5", "+tries=1", "@"+server, "-p", "5353", "remote.nsbind.test")
			if code != 0 || strings.TrimSpace(out) != "198.51.100.77" {
				t.Fatalf("dig @%s: exit %d, %q\nstderr:\n%s", server, code, out, stderr)
			}
		}
	})
	t.Run("closed port", func(t *testing.T) {
		for _, host := range []string{outRemote4, outRemote6} {
			code, out, stderr := outRun(t, u, "--", python, "-c", connectProbe, host, "8081")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if ok, msg := failsAtOnce(t, host+":8081", out, "ECONNREFUSED"); !ok {
				t.Fatal(msg)
			}
		}
	})
	t.Run("isolated", func(t *testing.T) {
		code, out, stderr := outRun(t, u, "--isolated", "--", curlBin, "-sS", "--max-time", "10", "http://"+outRemote4+":8080/")
		if code != 7 || !strings.Contains(stderr, "Couldn't connect") {
			t.Fatalf("curl with --isolated: exit %d, %q, stderr:\n%s", code, out, stderr)
		}
		code, out, stderr = outRun(t, u, "--isolated", "--", python, "-c", connectProbe, outRemote4, "8080")
		if ok, msg := failsAtOnce(t, "isolated", out, "ENETUNREACH"); code != 0 || !ok {
			t.Fatalf("%s (exit %d, %s)", msg, code, stderr)
		}
	})
}

// Acceptance 3: a resolver on the host's loopback (dnsmasq on
// 127.0.0.153:53) answers lookups made inside through the normal resolver
// path, when the resolv.conf given with --resolv-conf names it. Port 53 on
// the host needs root for the setup; nsbind runs as the test user.
func TestResolverOnHostLoopback(t *testing.T) {
	u := asTestUser(t)
	getent := userProgram(t, "getent")
	python := userProgram(t, "python3")
	dig := userProgram(t, "dig")
	start := func(t *testing.T, name string, args ...string) {
		startProcess(t, name, exec.Command(name, args...), "")
	}
	startDNS(t, start, "127.0.0.153", 53, "host.nsbind.test", "198.51.100.88")
	resolv := filepath.Join(u.dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver 127.0.0.153\noptions timeout:2 attempts:2\n"), 0o644)
	script := fmt.Sprintf(`
%s hosts host.nsbind.test
%s -c 'import socket; print(sorted({a[4][0] for a in socket.getaddrinfo("host.nsbind.test", 80)}))'
%s +tcp +short +time=5 +tries=1 host.nsbind.test
`, getent, python, dig)
	code, out, stderr := outRun(t, u, "--resolv-conf", resolv, "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "198.51.100.88") || lines[1] != "['198.51.100.88']" || lines[2] != "198.51.100.88" {
		t.Fatalf("want getent, getaddrinfo and dig +tcp to give 198.51.100.88, got:\n%s\nstderr:\n%s", out, stderr)
	}
}

// Acceptance 6: a 1 GiB download from the remote host through the outbound
// path arrives intact; the test logs its throughput next to a direct
// download from the host.
func TestOutboundDownload1GiB(t *testing.T) {
	u := asTestUser(t)
	curlBin := userProgram(t, "curl")
	h := newOutRemote(t)
	www := filepath.Join(u.dir, "www")
	os.Mkdir(www, 0o755)
	want := writeRandomFile(t, filepath.Join(www, "1g.bin"), 1<<30)
	h.startHTTP(t, www, 8080)
	url := "http://" + outRemote4 + ":8080/1g.bin"
	// The same download twice, inside and directly on the host, each into
	// the same hasher here (a sha256sum process would be slower than the
	// network on a busy machine).
	download := func(cmd *exec.Cmd) (string, time.Duration) {
		t.Helper()
		h := sha256.New()
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = h, &stderr
		start := time.Now()
		if err := runBounded(cmd, 180*time.Second); err != nil || cmd.ProcessState.ExitCode() != 0 {
			t.Fatalf("%s: %v, exit %d\n%s", cmd, err, cmd.ProcessState.ExitCode(), stderr.String())
		}
		return hex.EncodeToString(h.Sum(nil)), time.Since(start)
	}
	got, through := download(outCmd(t, u, "--", curlBin, "-sS", "--max-time", "170", url))
	if got != want {
		t.Fatalf("the download inside hashes to %s, want %s", got, want)
	}
	got, direct := download(exec.Command(curlBin, "-sS", "--max-time", "170", url))
	if got != want {
		t.Fatalf("the direct download hashes to %s, want %s", got, want)
	}
	mbps := func(d time.Duration) float64 { return float64(1<<30) / d.Seconds() / 1e6 }
	t.Logf("1 GiB from python3 http.server in the remote host: through nsbind's outbound path %.0f MB/s (%.2fs, nsbind's start included); direct from the host %.0f MB/s (%.2fs)",
		mbps(through), through.Seconds(), mbps(direct), direct.Seconds())
}

// writeRandomFile writes size pseudo-random bytes to path and returns their
// SHA-256 in hex.
func writeRandomFile(t *testing.T, path string, size int) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	r := rand.NewChaCha8([32]byte([]byte("nsbind: a 1 GiB outbound download")))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= len(buf) {
		r.Read(buf)
		h.Write(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
