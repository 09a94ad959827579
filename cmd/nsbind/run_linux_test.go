package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nsbind/nsbind/internal/hints"
)

// curl fetches url and returns the body.
func curl(t *testing.T, url string) string {
	t.Helper()
	out, err := exec.Command(needProgram(t, "curl"), "-sS", "-g", "--max-time", "10", url).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	return string(out)
}

// Acceptance: python3's http.server binds port 80 inside and answers on
// 127.0.0.1 and ::1; the server runs as the user with no capabilities.
func TestHTTPServerOnPort80(t *testing.T) {
	python := needProgram(t, "python3")
	dir := serverTempDir(t)
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello from inside\n"), 0o644)
	r := startNsbind(t, "-p", "80:0", "--", python, "-m", "http.server", "--directory", dir, "80")
	for _, family := range []int{4, 6} {
		a := r.addr(family)
		if got := curl(t, fmt.Sprintf("http://%s/hello.txt", a)); got != "hello from inside\n" {
			t.Fatalf("IPv%d: got %q", family, got)
		}
	}
	server := processNamed(t, r.cmd.Process.Pid, "python3")
	uid := strconv.Itoa(serverUID())
	if got := strings.Fields(statusField(t, server, "Uid")); got[0] != uid || got[1] != uid {
		t.Errorf("server Uid %v, want %s", got, uid)
	}
	if got := statusField(t, server, "CapEff"); got != "0000000000000000" {
		t.Errorf("server CapEff %s, want none", got)
	}
	if got := statusField(t, server, "CapBnd"); got != "0000000000000000" {
		t.Errorf("server CapBnd %s, want an empty bounding set", got)
	}
	if got := statusField(t, server, "NoNewPrivs"); got != "1" {
		t.Errorf("server NoNewPrivs %s, want 1", got)
	}
	if !strings.Contains(r.stderr.String(), "→ :80/tcp") {
		t.Errorf("no start line on stderr:\n%s", r.stderr.String())
	}
}

// --root maps the user to uid 0 inside, with the namespace's capabilities.
func TestRootInside(t *testing.T) {
	code, out, stderr := runNsbind(t, "run", "--root", "-q", "--", "sh", "-c", "id -u; grep CapEff /proc/self/status")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "0" || strings.HasSuffix(lines[1], "0000000000000000") {
		t.Fatalf("want uid 0 with capabilities inside, got %q", out)
	}
	// And without --root the user stays itself.
	_, out, _ = runNsbind(t, "run", "-q", "--", "id", "-u")
	if strings.TrimSpace(out) != strconv.Itoa(serverUID()) {
		t.Fatalf("uid inside %q, want %d", out, serverUID())
	}
}

// Acceptance: 200 concurrent connections each send 4 MiB to an echo server
// inside and get every byte back; each client half-closes and still reads
// the whole reply.
func TestConcurrentEcho(t *testing.T) {
	r := startNsbind(t, "-p", "7:0", "--", os.Args[0], "__server", "echo", "7")
	const conns, size = 200, 4 << 20
	for _, family := range []int{4, 6} {
		a := r.addr(family)
		var wg sync.WaitGroup
		errs := make(chan error, conns)
		for range conns / 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- echoThrough(a, size)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("IPv%d: %v", family, err)
			}
		}
	}
}

// echoThrough sends size random bytes to an echo server at ap, half-closes
// and checks the reply by hash.
func echoThrough(ap netip.AddrPort, size int) error {
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(120 * time.Second))
	data := make([]byte, size)
	rand.Read(data)
	want := sha256.Sum256(data)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	n, err := io.Copy(h, c)
	if err != nil {
		return fmt.Errorf("reading the echo: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	if n != int64(size) || !bytes.Equal(h.Sum(nil), want[:]) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", size, n)
	}
	return nil
}

// A v6 client reaches a server that listens on IPv4 only.
func TestFamilyFallback(t *testing.T) {
	r := startNsbind(t, "-p", "7:0", "--", os.Args[0], "__server", "echo4", "7")
	if err := echoThrough(r.addr(6), 1000); err != nil {
		t.Fatal(err)
	}
}

// Acceptance: the server's exit code, and 128+N for a signal.
func TestExitStatus(t *testing.T) {
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 7", 7},
		{"exit 125", 125},
		{"kill -USR1 $$", 128 + int(syscall.SIGUSR1)},
	}
	for _, tt := range tests {
		code, _, stderr := runNsbind(t, "run", "-q", "--", "sh", "-c", tt.script)
		if code != tt.want {
			t.Errorf("%q: exit %d, want %d; stderr:\n%s", tt.script, code, tt.want, stderr)
		}
	}
}

// Acceptance: kill -TERM on nsbind reaches the server, and nsbind exits with
// the server's status.
func TestSIGTERMReachesServer(t *testing.T) {
	r := startNsbind(t, "--", os.Args[0], "__server", "sigwait")
	r.waitOutput("ready")
	if code := r.stop(15 * time.Second); code != 42 {
		t.Fatalf("exit %d, want the server's 42", code)
	}
	if !strings.Contains(r.stdout.String(), "got SIGTERM") {
		t.Fatalf("the server did not report SIGTERM:\n%s", r.stdout.String())
	}
	// A server that does not catch it dies of it: 128+15.
	r = startNsbind(t, "--", "sleep", "1000")
	processNamed(t, r.cmd.Process.Pid, "sleep")
	if code := r.stop(15 * time.Second); code != 143 {
		t.Fatalf("exit %d, want 143", code)
	}
}

// Acceptance: kill -KILL on nsbind leaves no process of the run alive and
// the port closed within a second.
func TestSIGKILLLeavesNothing(t *testing.T) {
	python := needProgram(t, "python3")
	// The server starts a child of its own that would outlive a plain kill.
	r := startNsbind(t, "-p", "80:0", "--", "sh", "-c", "sleep 1000 & exec "+python+" -m http.server 80")
	a := r.addr(4)
	curl(t, fmt.Sprintf("http://%s/", a))
	procs := descendants(r.cmd.Process.Pid)
	if len(procs) < 3 {
		t.Fatalf("expected helper, server and its child, found %v", procs)
	}
	r.cmd.Process.Kill()
	<-r.done
	waitUntil(t, time.Second, func() bool {
		for _, p := range procs {
			if alive(p) {
				return false
			}
		}
		return refused(a) && refused(r.addr(6))
	}, func() string {
		var left []int
		for _, p := range procs {
			if alive(p) {
				left = append(left, p)
			}
		}
		return fmt.Sprintf("still alive: %v; port refused: %v", left, refused(a))
	})
}

// Acceptance: a busy host port fails at once with 125, names the port and
// the remedy, and the command never starts.
func TestBusyHostPort(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	marker := filepath.Join(t.TempDir(), "started")
	code, _, stderr := runNsbind(t, "run", "-p", fmt.Sprintf("80:%d", port), "--", "touch", marker)
	if code != 125 {
		t.Fatalf("exit %d, want 125; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{strconv.Itoa(port), "already in use", "-p 80:0"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("message does not say %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although the port was busy")
	}
}

// Acceptance: a privileged host port fails at once with 125 and says what to
// do: the sysctl, a port above the limit, and which number is which.
func TestPrivilegedHostPort(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root may bind privileged host ports")
	}
	if hints.HostUnprivilegedPortStart() <= 80 {
		t.Skip("this host lets everyone bind port 80")
	}
	marker := filepath.Join(t.TempDir(), "started")
	code, _, stderr := runNsbind(t, "run", "-p", "80:80", "--", "touch", marker)
	if code != 125 {
		t.Fatalf("exit %d, want 125; stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"host port 80", "net.ipv4.ip_unprivileged_port_start", "first number of -p is the port inside", "-p 80:8080"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("message does not say %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the command ran although the port was refused")
	}
}

// Docker's order (-p HOSTPORT:PORT) gets the two numbers swapped back, each
// spec of the run its own fix, and docker's HOSTIP:HOSTPORT:PORT form gets
// nsbind's spelling.
func TestPrivilegedHostPortDockerOrder(t *testing.T) {
	if os.Getuid() == 0 {
		t.Skip("root may bind privileged host ports")
	}
	if hints.HostUnprivilegedPortStart() <= 443 {
		t.Skip("this host lets everyone bind port 443")
	}
	code, _, stderr := runNsbind(t, "run", "-p", "8443:443", "-p", "8080:80", "--", "true")
	if code != 125 || !strings.Contains(stderr, "-p 443:8443 -p 80:8080") {
		t.Errorf("exit %d, want 125 suggesting -p 443:8443 -p 80:8080; stderr:\n%s", code, stderr)
	}
	code, _, stderr = runNsbind(t, "run", "-p", "80/udp", "--", "true")
	if code != 125 || !strings.Contains(stderr, "-p 80:8080/udp") {
		t.Errorf("exit %d, want 125 suggesting -p 80:8080/udp; stderr:\n%s", code, stderr)
	}
	code, _, stderr = runNsbind(t, "run", "-p", "127.0.0.1:8080:80", "--", "true")
	if code != 125 || !strings.Contains(stderr, "-p 80:127.0.0.1:8080") {
		t.Errorf("exit %d, want 125 suggesting -p 80:127.0.0.1:8080; stderr:\n%s", code, stderr)
	}
}

// A host address that is not local fails with 125 and says so.
func TestHostAddressNotLocal(t *testing.T) {
	code, _, stderr := runNsbind(t, "run", "-p", "80:192.0.2.77:0", "--", "true")
	if code != 125 || !strings.Contains(stderr, "192.0.2.77 is not an address of this host") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

// Acceptance: a missing command exits 127 and names it; one that cannot be
// run exits 126.
func TestCommandCannotRun(t *testing.T) {
	code, _, stderr := runNsbind(t, "run", "-p", "80:0", "--", "no-such-command-nsbind")
	if code != 127 || !strings.Contains(stderr, "no-such-command-nsbind") {
		t.Fatalf("exit %d, want 127 naming the command; stderr:\n%s", code, stderr)
	}
	notExec := filepath.Join(t.TempDir(), "server")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	code, _, stderr = runNsbind(t, "run", "--", notExec)
	if code != 126 || !strings.Contains(stderr, notExec) {
		t.Fatalf("exit %d, want 126 naming the file; stderr:\n%s", code, stderr)
	}
}

// Bad flags and specs fail with 125 before anything starts.
func TestBadInput(t *testing.T) {
	tests := []struct {
		args []string
		says string
	}{
		{[]string{"run", "-p", "80:x", "true"}, `invalid port spec "80:x"`},
		{[]string{"run", "-p", "80:8080", "-p", "81:8080", "true"}, "both claim"},
		{[]string{"run", "--log-level", "loud", "true"}, "--log-level"},
		{[]string{"run", "--no-such-flag", "true"}, "unknown flag"},
		{[]string{"run"}, "no command"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"run", "--direct", "--proxy-protocol", "v1", "true"}, "--direct and --proxy-protocol do not go together"},
		{[]string{"run", "--direct", "--net=veth", "true"}, "--direct and --net=veth are two different data paths"},
	}
	for _, tt := range tests {
		code, _, stderr := runInProcess(t, tt.args...)
		if code != 125 || !strings.Contains(stderr, tt.says) {
			t.Errorf("nsbind %q: exit %d, stderr %q; want 125 saying %q", tt.args, code, stderr, tt.says)
		}
	}
}

// Flags end at the command: later flags belong to the server.
func TestFlagsEndAtCommand(t *testing.T) {
	for _, args := range [][]string{
		{"-q", "echo", "-p", "--quiet"},
		{"-q", "-p", "80:0", "sh", "-c", `echo "$@"`, "sh", "-p", "--quiet"},
		{"-q", "--", "echo", "-p", "--quiet"},
		{"-q", "-p", "80:0", "--", "echo", "-p", "--quiet"},
		{"-q", "echo", "--", "-p", "--quiet"},
	} {
		want := "-p --quiet"
		if args[len(args)-3] == "--" {
			want = "-- -p --quiet"
		}
		code, out, stderr := runNsbind(t, append([]string{"run"}, args...)...)
		if code != 0 || strings.TrimSpace(out) != want {
			t.Errorf("nsbind run %q: exit %d, out %q, stderr %q; want %q", args, code, out, stderr, want)
		}
	}
	// The server's own -v and --help too, not nsbind's.
	code, out, stderr := runNsbind(t, "run", "-q", "-p", "80:0", "echo", "-v", "--help", "-h")
	if code != 0 || strings.TrimSpace(out) != "-v --help -h" {
		t.Fatalf("exit %d, out %q, stderr %q", code, out, stderr)
	}
}

// Acceptance: the server holds only descriptors 0, 1 and 2 and sees no
// NSBIND_* variable.
func TestServerGetsNothingOfNsbind(t *testing.T) {
	os.Setenv("NSBIND_TEST_MARKER", "1")
	defer os.Unsetenv("NSBIND_TEST_MARKER")
	r := startNsbind(t, "-p", "80:0", "--", "sleep", "1000")
	server := processNamed(t, r.cmd.Process.Pid, "sleep")
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", server))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fd := range fds {
		names = append(names, fd.Name())
	}
	if strings.Join(names, " ") != "0 1 2" {
		t.Errorf("server descriptors %v, want 0 1 2", names)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", server))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, "NSBIND_") {
			t.Errorf("server environment has %s", kv)
		}
	}
	if !strings.Contains(string(env), "PATH=") {
		t.Errorf("server environment lost the user's variables: %q", env)
	}
}

// Acceptance: the TCP relay moves data with splice(2), seen by strace
// attached to the helper.
func TestRelaySplices(t *testing.T) {
	strace := needProgram(t, "strace")
	r := startNsbind(t, "--relay", "-p", "7:0", "--", os.Args[0], "__server", "echo", "7")
	helper := descendants(r.cmd.Process.Pid)[0]
	out := filepath.Join(t.TempDir(), "strace.txt")
	st := exec.Command(strace, "-f", "-qq", "-e", "trace=splice,read,write,recvfrom,sendto", "-o", out, "-p", strconv.Itoa(helper))
	stderr := new(lockedBuffer)
	st.Stderr = stderr
	if err := st.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		st.Process.Signal(syscall.SIGINT)
		st.Wait()
	}()
	// strace writes the file once it has attached to the helper's threads.
	waitUntil(t, 10*time.Second, func() bool {
		return attached(helper)
	}, func() string { return "strace did not attach: " + stderr.String() })
	const size = 16 << 20
	if err := echoThrough(r.addr(4), size); err != nil {
		t.Fatal(err)
	}
	st.Process.Signal(syscall.SIGINT)
	st.Wait()
	b, _ := os.ReadFile(out)
	var spliced int64
	re := regexp.MustCompile(`splice(?:\(.*\)| resumed>\)) += (\d+)`)
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		spliced += n
	}
	// Each byte is spliced twice per direction (socket → pipe → socket).
	if spliced < 2*2*size {
		t.Fatalf("splice moved %d bytes, want at least %d; strace:\n%.2000s", spliced, 4*size, b)
	}
}

// attached reports whether a tracer is attached to every thread of pid.
func attached(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			return false
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "TracerPid:"); ok && strings.TrimSpace(v) == "0" {
				return false
			}
		}
	}
	return true
}
