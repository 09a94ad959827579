package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// requireUserns probes by creating a user and network namespace. When the
// host forbids it the test skips with the reason, except under
// NSBIND_TEST_REQUIRE_USERNS=1 (set by scripts/test.sh), where it fails.
func requireUserns(t *testing.T) {
	t.Helper()
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}},
	}
	if err := cmd.Run(); err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("cannot create a user namespace here (NSBIND_TEST_REQUIRE_USERNS=1): %v", err)
		}
		t.Skipf("cannot create a user namespace here: %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// nsbindRun is nsbind running as a child of the test.
type nsbindRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	ports  []portEntry
	done   chan struct{}
	code   int
}

// nsbindCmd is the command line of nsbind (the test binary as the CLI).
// Under NSBIND_TEST_RELAY=1 (scripts/test.sh runs the suite once so) every
// "nsbind run" gets --direct=false: the native path (the default) and the
// relay pass the same suite. A test's own --direct, later on the line,
// still wins.
func nsbindCmd(args ...string) *exec.Cmd {
	if relayMode() && len(args) > 0 && args[0] == "run" {
		args = append([]string{"run", "--direct=false"}, args[1:]...)
	}
	return exec.Command(os.Args[0], append([]string{"__nsbind"}, args...)...)
}

// relayMode reports whether the suite runs with the relay (--direct=false).
func relayMode() bool { return os.Getenv("NSBIND_TEST_RELAY") == "1" }

// directMode reports whether the suite runs with the native path, the
// default.
func directMode() bool { return !relayMode() }

// skipInDirectMode skips a test of the relay's own behaviour (how it dials
// the server) when the suite runs with the native path, where there is no
// relay; the relay pass runs it.
func skipInDirectMode(t *testing.T) {
	t.Helper()
	if directMode() {
		t.Skip("tests the relay; on the native path (the default) the server accepts the clients itself; the relay pass runs it")
	}
}

// startNsbind starts "nsbind run --ports-file F ARGS..." and waits until
// nsbind has written the ports file (every host socket listens) and, unless
// -q, printed its start lines (the server runs), or has exited.
func startNsbind(t *testing.T, args ...string) *nsbindRun {
	t.Helper()
	return startNsbindIn(t, t.TempDir(), nil, args...)
}

// startNsbindAs is startNsbind with nsbind running as the test user u (nil:
// as the test itself).
func startNsbindAs(t *testing.T, u *testUser, args ...string) *nsbindRun {
	t.Helper()
	if u == nil {
		return startNsbind(t, args...)
	}
	return startNsbindIn(t, u.dir, u.prepare, args...)
}

// startNsbindVia is startNsbind with nsbind started by the command line
// via (e.g. prlimit ARGS --), which must exec it in the same process.
func startNsbindVia(t *testing.T, via []string, args ...string) *nsbindRun {
	t.Helper()
	path, err := exec.LookPath(via[0])
	if err != nil {
		t.Fatal(err)
	}
	return startNsbindIn(t, t.TempDir(), func(cmd *exec.Cmd) {
		cmd.Args = append(append([]string{path}, via[1:]...), cmd.Args...)
		cmd.Path = path
	}, args...)
}

// startNsbindIn is startNsbind with the ports file in dir and prepare, if
// not nil, adjusting the command before it starts (to run it as another
// user, say).
func startNsbindIn(t *testing.T, dir string, prepare func(*exec.Cmd), args ...string) *nsbindRun {
	t.Helper()
	requireUserns(t)
	portsFile := filepath.Join(dir, "ports.json")
	cmd := nsbindCmd(append([]string{"run", "--ports-file", portsFile}, args...)...)
	if prepare != nil {
		prepare(cmd)
	}
	return launchNsbind(t, cmd, portsFile, quiet(args))
}

// launchNsbind starts cmd, an nsbind run that writes its ports file to
// portsFile, and waits as startNsbind does (for the start lines unless
// quiet). nsbind is killed when the test ends, and its output logged if
// the test failed.
func launchNsbind(t *testing.T, cmd *exec.Cmd, portsFile string, quiet bool) *nsbindRun {
	t.Helper()
	r := &nsbindRun{t: t, cmd: cmd, stdout: new(lockedBuffer), stderr: new(lockedBuffer), done: make(chan struct{})}
	r.cmd.Stdout = r.stdout
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
		if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.code = 128 + int(ws.Signal())
		}
		close(r.done)
	}()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			t.Logf("nsbind stderr:\n%s\nstdout:\n%s", r.stderr.String(), r.stdout.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if b, err := os.ReadFile(portsFile); err == nil {
			if err := json.Unmarshal(b, &r.ports); err != nil {
				t.Fatalf("ports file: %v\n%s", err, b)
			}
			// The file is written before the server starts; the start
			// lines come once it runs.
			if quiet || strings.Count(r.stderr.String(), " → :") >= len(r.ports) {
				return r
			}
		}
		select {
		case <-r.done:
			return r
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nsbind did not start within 15s; stderr:\n%s", r.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quiet reports whether args include -q before any "--" (a -q of the
// server's own only makes the wait shorter).
func quiet(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-q" || a == "--quiet" {
			return true
		}
	}
	return false
}

// port is the host address of the first published socket of the family.
func (r *nsbindRun) addr(family int) netip.AddrPort {
	r.t.Helper()
	for _, p := range r.ports {
		a := netip.MustParseAddr(p.HostIP)
		if (family == 4) == a.Is4() {
			return netip.AddrPortFrom(a, p.HostPort)
		}
	}
	r.t.Fatalf("no IPv%d socket published: %+v; stderr:\n%s", family, r.ports, r.stderr.String())
	return netip.AddrPort{}
}

// stop sends nsbind SIGTERM and waits for it to exit, at most d, and
// returns its status.
func (r *nsbindRun) stop(d time.Duration) int {
	r.t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		r.t.Fatalf("SIGTERM to nsbind: %v", err)
	}
	return r.wait(d)
}

// wait waits for nsbind to exit, at most d, and returns its status.
func (r *nsbindRun) wait(d time.Duration) int {
	r.t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(d):
		r.t.Fatalf("nsbind did not exit within %v; stderr:\n%s", d, r.stderr.String())
		return -1
	}
}

// waitOutput waits until nsbind's stdout contains s, at most 15 seconds.
func (r *nsbindRun) waitOutput(s string) {
	r.t.Helper()
	waitUntil(r.t, 15*time.Second, func() bool { return strings.Contains(r.stdout.String(), s) },
		func() string { return fmt.Sprintf("no %q in the output:\n%s", s, r.stdout.String()) })
}

// waitUntil polls cond every few milliseconds for at most d.
func waitUntil(t *testing.T, d time.Duration, cond func() bool, why func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, why())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runNsbind runs nsbind to the end and returns its status, stdout and
// stderr.
func runNsbind(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runNsbindWith(t, nil, args...)
}

// runNsbindWith is runNsbind with prepare, if not nil, adjusting the
// command before it starts (its environment, say).
func runNsbindWith(t *testing.T, prepare func(*exec.Cmd), args ...string) (int, string, string) {
	t.Helper()
	requireUserns(t)
	cmd := nsbindCmd(args...)
	if prepare != nil {
		prepare(cmd)
	}
	return runCmdWithin(t, cmd, 30*time.Second)
}

// runCmd runs cmd to its end (at most a minute) and returns its status and
// output.
func runCmd(t *testing.T, cmd *exec.Cmd) (int, string, string) {
	t.Helper()
	return runCmdWithin(t, cmd, time.Minute)
}

// runCmdWithin runs cmd to its end, killing it and failing the test after
// d, and returns its status, stdout and stderr.
func runCmdWithin(t *testing.T, cmd *exec.Cmd, d time.Duration) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := runBounded(cmd, d); err != nil {
		t.Fatalf("%q: %v; stderr:\n%s", cmd.Args, err, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// runBounded runs cmd, killing it after d.
func runBounded(cmd *exec.Cmd, d time.Duration) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(d):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("did not finish within %v", d)
	}
}

// startCmd starts cmd and returns a channel closed once it has exited and
// been waited for (cmd.ProcessState is set then). When the test ends the
// process is killed and waited for.
func startCmd(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return done
}

// startProcess starts cmd (what it is, for the messages) with its stdout
// and stderr collected, and, unless ready is "", waits at most 15 seconds
// until they hold ready, failing if it ends first. It is killed when the
// test ends, and its output logged if the test failed.
func startProcess(t *testing.T, what string, cmd *exec.Cmd, ready string) *lockedBuffer {
	t.Helper()
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s:\n%s", what, out.String())
		}
	})
	done := startCmd(t, cmd)
	if ready == "" {
		return out
	}
	ended := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	waitUntil(t, 15*time.Second, func() bool { return strings.Contains(out.String(), ready) || ended() },
		func() string { return fmt.Sprintf("%s did not print %q:\n%s", what, ready, out.String()) })
	if !strings.Contains(out.String(), ready) {
		t.Fatalf("%s ended before it printed %q:\n%s", what, ready, out.String())
	}
	return out
}

// descendants lists the processes below pid, found through
// /proc/PID/task/TID/children.
func descendants(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			child, _ := strconv.Atoi(f)
			out = append(out, child)
			out = append(out, descendants(child)...)
		}
	}
	return out
}

// processNamed finds the descendant of pid whose command name is comm.
func processNamed(t *testing.T, pid int, comm string) int {
	t.Helper()
	var found int
	waitUntil(t, 10*time.Second, func() bool {
		for _, p := range descendants(pid) {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
			if strings.TrimSpace(string(b)) == comm {
				found = p
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("no process %q below %d", comm, pid) })
	return found
}

// statusField reads one field of /proc/PID/status.
func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// alive reports whether pid still exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) uint16 {
	t.Helper()
	// Below the kernel's ephemeral range (32768 and up here; freeRange
	// takes 20000-31999): a port the kernel picked for us is one it may
	// give any client socket's connect(2) before nsbind binds it. A port
	// is handed out once per test process.
	for range freePortSpan {
		p := 10000 + (os.Getpid()+int(freePortNext.Add(1)))%freePortSpan
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		return uint16(p)
	}
	t.Fatal("no free port in 10000-19999 on 127.0.0.1")
	return 0
}

// freePortSpan is the span of freePort's ports, from 10000; freePortNext
// is the last one it gave.
const freePortSpan = 10000

var freePortNext atomic.Int64

// needProgram skips (or, under scripts/test.sh, fails) when a program the
// test drives is not installed.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("%s is not installed (scripts/test.sh installs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// refused reports whether connecting to ap is refused.
func refused(ap netip.AddrPort) bool {
	c, err := net.DialTimeout("tcp", ap.String(), time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
