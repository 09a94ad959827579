package main

import (
	"bytes"
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

	"github.com/nsbind/nsbind/internal/instance"
)

// The instance commands end to end: nsbind run --name, then ps, port,
// exec, stats and stop against it, as the user of the test (and, as root,
// across users).

// instanceName is a name for the test's run that no other run on this
// machine uses, whoever runs tests beside this one.
func instanceName(prefix string) string { return fmt.Sprintf("%s-%d", prefix, os.Getpid()) }

// cliAs runs the nsbind CLI to the end as cred (nil: as the test) with the
// test binary bin, and returns its status, stdout and stderr.
func cliAs(t *testing.T, cred *syscall.Credential, bin string, args ...string) (int, string, string) {
	t.Helper()
	if cred == nil {
		return runNsbind(t, args...)
	}
	cmd := exec.Command(bin, append([]string{"__nsbind"}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// Another user's own environment: no XDG_RUNTIME_DIR of the test's.
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/", "TMPDIR=/tmp"}
	cmd.Dir = "/"
	return runCmdWithin(t, cmd, 30*time.Second)
}

// cli runs the nsbind CLI as the test and fails the test unless it exits 0.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	code, stdout, stderr := runNsbind(t, args...)
	if code != 0 {
		t.Fatalf("nsbind %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout
}

// psList is nsbind ps --json as cred (nil: the test).
func psList(t *testing.T, cred *syscall.Credential, bin string) []instance.InstanceInfo {
	t.Helper()
	code, stdout, stderr := cliAs(t, cred, bin, "ps", "--json")
	if code != 0 {
		t.Fatalf("nsbind ps --json: exit %d\n%s", code, stderr)
	}
	var list []instance.InstanceInfo
	if err := json.Unmarshal([]byte(stdout), &list); err != nil {
		t.Fatalf("nsbind ps --json: %v\n%s", err, stdout)
	}
	return list
}

func findInstance(list []instance.InstanceInfo, name string) (instance.InstanceInfo, bool) {
	for _, ii := range list {
		if ii.Name == name {
			return ii, true
		}
	}
	return instance.InstanceInfo{}, false
}

// banner reads what the banner server at ap sends.
func banner(t *testing.T, ap netip.AddrPort) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", ap.String(), 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to %s: %v", ap, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading from %s: %v", ap, err)
	}
	return string(b)
}

// startExec starts "nsbind exec NAME ARGS..." as the test and waits until
// it prints a line "listening".
func startExec(t *testing.T, name string, args ...string) {
	t.Helper()
	startProcess(t, fmt.Sprintf("nsbind exec %q", args), nsbindCmd(append([]string{"exec", name, "--"}, args...)...), "listening\n")
}

// Acceptance 1: a named run is listed with its ports; a port added while
// it runs reaches a second server started with exec, and is refused once
// removed, while the run's own port goes on; a busy host port fails as in
// nsbind run and changes nothing; a second run of the same name fails.
func TestInstancePortAddRm(t *testing.T) {
	name := instanceName("web")
	port := freePort(t)
	r := startNsbind(t, "--name", name, "-p", fmt.Sprintf("80:%d", port), "--", os.Args[0], "__server", "banner", "80")
	p := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	if got := banner(t, p); got != "80\n" {
		t.Fatalf("the run's port answers %q", got)
	}
	if !strings.Contains(r.stderr.String(), "nsbind: instance "+name+" ") {
		t.Errorf("the start lines do not name the instance:\n%s", r.stderr.String())
	}

	ii, ok := findInstance(psList(t, nil, ""), name)
	if !ok {
		t.Fatalf("nsbind ps does not list %s", name)
	}
	if ii.Pid != r.cmd.Process.Pid || ii.UID != os.Geteuid() || len(ii.Command) != 4 || ii.Command[2] != "banner" {
		t.Errorf("ps: pid %d uid %d command %q, want %d, %d and the banner server", ii.Pid, ii.UID, ii.Command, r.cmd.Process.Pid, os.Geteuid())
	}
	if len(ii.Sockets) == 0 || ii.Sockets[0].Host != p.String() || ii.Sockets[0].Inside != 80 || ii.Sockets[0].Proto != "tcp" {
		t.Errorf("ps: sockets %+v, want %s → :80/tcp first", ii.Sockets, p)
	}
	if out := cli(t, "ps"); !strings.Contains(out, name) || !strings.Contains(out, fmt.Sprintf("%s→80/tcp", p)) {
		t.Errorf("nsbind ps:\n%s", out)
	}

	// The same name again: refused before anything starts.
	code, _, stderr := runNsbind(t, "run", "--name", name, "-p", "80:0", "--", "true")
	want := fmt.Sprintf("nsbind: an instance named %s is running (pid %d): choose another --name or nsbind stop %s\n", name, r.cmd.Process.Pid, name)
	if code != exitFailed || stderr != want {
		t.Errorf("a second run named %s: exit %d, stderr %q, want %d, %q", name, code, stderr, exitFailed, want)
	}

	// A second server inside, on 81, started with exec.
	startExec(t, name, os.Args[0], "__server", "banner", "81")
	port2 := freePort(t)
	p2 := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port2)
	spec2 := fmt.Sprintf("81:%d", port2)
	if out := cli(t, "port", name, "add", spec2); !strings.Contains(out, fmt.Sprintf("%s → :81/tcp added", p2)) {
		t.Errorf("port add says:\n%s", out)
	}
	if got := banner(t, p2); got != "81\n" {
		t.Fatalf("the added port answers %q", got)
	}
	if got := banner(t, netip.AddrPortFrom(netip.IPv6Loopback(), port2)); got != "81\n" {
		t.Fatalf("the added port on ::1 answers %q", got)
	}
	// The live counters: the two connections to the added port.
	code, stdout, stderr := runNsbind(t, "stats", name, "--json")
	var stats []instance.SocketStats
	if code != 0 || json.Unmarshal([]byte(stdout), &stats) != nil {
		t.Fatalf("stats: exit %d\n%s%s", code, stdout, stderr)
	}
	var conns int64
	for _, s := range stats {
		if s.Inside == 81 {
			conns += s.Conns
		}
	}
	if conns != 2 {
		t.Errorf("stats: %d connections to the added port, want 2: %+v", conns, stats)
	}

	lsBefore := cli(t, "port", name, "ls", "--json")
	if !strings.Contains(lsBefore, p2.String()) {
		t.Errorf("port ls does not list %s:\n%s", p2, lsBefore)
	}
	cli(t, "port", name, "rm", spec2)
	if !refused(p2) {
		t.Errorf("%s still answers after port rm", p2)
	}
	if got := banner(t, p); got != "80\n" {
		t.Errorf("the run's port answers %q after port rm", got)
	}
	code, _, stderr = runNsbind(t, "port", name, "rm", spec2)
	if code != exitFailed || !strings.Contains(stderr, "is not published") {
		t.Errorf("removing it again: exit %d\n%s", code, stderr)
	}

	// A busy host port: the message of nsbind run, and nothing changes.
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busySpec := fmt.Sprintf("82:%d", busy.Addr().(*net.TCPAddr).Port)
	lsBefore = cli(t, "port", name, "ls", "--json")
	free := freePort(t)
	code, _, stderr = runNsbind(t, "port", name, "add", fmt.Sprintf("83:%d", free), busySpec)
	_, _, runStderr := runNsbind(t, "run", "-p", busySpec, "--", "true")
	if code != exitFailed || stderr != runStderr || !strings.Contains(stderr, "already in use") {
		t.Errorf("port add of a busy port: exit %d, stderr\n%s\nwant %d and nsbind run's\n%s", code, stderr, exitFailed, runStderr)
	}
	if ls := cli(t, "port", name, "ls", "--json"); ls != lsBefore {
		t.Errorf("a failed port add changed the ports:\n%s\nwas\n%s", ls, lsBefore)
	}
	if !refused(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), free)) {
		t.Errorf("the free port of the failed port add is bound")
	}
	code, _, stderr = runNsbind(t, "port", name, "rm", fmt.Sprintf("80:%d", port))
	if code != exitFailed || !strings.Contains(stderr, "only ports added with nsbind port add") {
		t.Errorf("removing a port of the start: exit %d\n%s", code, stderr)
	}

	// stop is SIGTERM: the banner server dies of it.
	cli(t, "stop", name)
	if code := r.wait(15 * time.Second); code != 128+int(syscall.SIGTERM) {
		t.Errorf("after stop nsbind exited %d, want %d", code, 128+int(syscall.SIGTERM))
	}
	if _, ok := findInstance(psList(t, nil, ""), name); ok {
		t.Errorf("ps lists %s after stop", name)
	}
}

// Acceptance 2: exec runs commands inside with their output and status,
// without capabilities and with no_new_privs, and passes signals on.
func TestInstanceExec(t *testing.T) {
	curl := needProgram(t, "curl")
	python := needProgram(t, "python3")
	name := instanceName("exec")
	dir := t.TempDir()
	// As root the server runs as another user (DESIGN.md, fact 13).
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const page = "hello from inside\n"
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	// With --direct the server's socket is the host socket, which
	// localhost:80 inside does not reach: this test needs the relay.
	r := startNsbind(t, "--direct=false", "--name", name, "-p", "80:0", "--", python, "-m", "http.server", "--directory", dir, "80")
	// Through the port first: the relay waits until the server listens.
	if out, err := exec.Command(curl, "-sf", "http://"+r.addr(4).String()+"/hello.txt").Output(); err != nil || string(out) != page {
		t.Fatalf("the page through the published port: %q, %v", out, err)
	}

	code, stdout, stderr := runNsbind(t, "exec", name, curl, "-s", "localhost:80/hello.txt")
	if code != 0 || stdout != page {
		t.Errorf("exec curl: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := runNsbind(t, "exec", name, "sh", "-c", "exit 3"); code != 3 {
		t.Errorf("exec sh -c 'exit 3': exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runNsbind(t, "exec", name, "--", "sh", "-c", "kill -TERM $$"); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exec of a command killed by SIGTERM: exit %d\n%s", code, stderr)
	}
	code, _, stderr = runNsbind(t, "exec", name, "no-such-command-here")
	if code != 127 || !strings.Contains(stderr, "command not found: no-such-command-here") {
		t.Errorf("exec of a missing command: exit %d\n%s", code, stderr)
	}
	// The server's restrictions, as the kernel reports them.
	code, stdout, stderr = runNsbind(t, "exec", name, "grep", "-E", "^(CapEff|CapBnd|NoNewPrivs):", "/proc/self/status")
	if code != 0 || !strings.Contains(stdout, "CapEff:\t0000000000000000") || !strings.Contains(stdout, "CapBnd:\t0000000000000000") ||
		!strings.Contains(stdout, "NoNewPrivs:\t1") {
		t.Errorf("exec'd command's capabilities: exit %d\n%s%s", code, stdout, stderr)
	}
	// No nsbind descriptor reaches it: only 0, 1, 2 (and ls's own).
	code, stdout, _ = runNsbind(t, "exec", name, "ls", "/proc/self/fd")
	if fds := strings.Fields(stdout); code != 0 || len(fds) != 4 {
		t.Errorf("exec'd command's descriptors: exit %d, %q (want 0 1 2 and ls's own)", code, fds)
	}
	// Its stdin is nsbind exec's.
	cmd := nsbindCmd("exec", name, "cat")
	cmd.Stdin = strings.NewReader("through stdin\n")
	if out, err := cmd.Output(); err != nil || string(out) != "through stdin\n" {
		t.Errorf("exec cat: %q, %v", out, err)
	}

	// A signal to nsbind exec reaches the command.
	sleeper := nsbindCmd("exec", name, "sh", "-c", "echo started; exec sleep 30")
	done := startCmd(t, sleeper)
	// "started" is the command's own: it runs by then.
	processNamed(t, os.Getpid(), "sleep")
	sleeper.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("nsbind exec did not end within 15s of SIGTERM")
	}
	if code := sleeper.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exec sleep after SIGTERM: exit %d, want %d", code, 128+int(syscall.SIGTERM))
	}
}

// exec -it gives the command a terminal: an interactive bash under tmux
// has job control, the window's size, and follows a resize.
func TestInstanceExecTTY(t *testing.T) {
	tmux := needProgram(t, "tmux")
	needProgram(t, "bash")
	name := instanceName("tty")
	startNsbind(t, "--name", name, "-p", "80:0", "--", os.Args[0], "__server", "banner", "80")

	sock := filepath.Join(t.TempDir(), "tmux.sock")
	tm := func(args ...string) (string, error) {
		cmd := exec.Command(tmux, append([]string{"-S", sock}, args...)...)
		cmd.Env = append(os.Environ(), "TERM=xterm")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The command gets the server's environment and what -e adds, not
	// nsbind exec's.
	line := fmt.Sprintf("%s __nsbind exec -it -e 'PS1=IN$ ' %s bash --norc --noprofile -i; echo exec-exit=$?; sleep 60", os.Args[0], name)
	if out, err := tm("-f", "/dev/null", "new-session", "-d", "-x", "100", "-y", "30", "sh", "-c", line); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { tm("kill-server") })
	screen := func() string {
		out, _ := tm("capture-pane", "-p", "-J", "-S", "-100")
		return out
	}
	waitScreen := func(want string) {
		t.Helper()
		waitUntil(t, 15*time.Second, func() bool { return strings.Contains(screen(), want) },
			func() string { return fmt.Sprintf("no %q on the screen:\n%s", want, screen()) })
	}
	waitScreen("IN$ ")
	if s := screen(); strings.Contains(s, "no job control") || strings.Contains(s, "cannot set terminal process group") {
		t.Errorf("bash has no job control:\n%s", s)
	}
	tm("send-keys", "echo size=$(stty size) tty=$(tty) sum=$((6*7))", "Enter")
	waitScreen("sum=42")
	if s := screen(); !strings.Contains(s, "size=30 100") || !strings.Contains(s, "tty=/dev/pts/") {
		t.Errorf("the terminal inside:\n%s", s)
	}
	tm("resize-window", "-x", "90", "-y", "25")
	waitUntil(t, 15*time.Second, func() bool {
		tm("send-keys", "echo resized=$(stty size)", "Enter")
		time.Sleep(100 * time.Millisecond)
		return strings.Contains(screen(), "resized=25 90")
	}, func() string { return "the size inside did not follow the window:\n" + screen() })
	// Job control: a stopped job and fg.
	tm("send-keys", "sleep 30", "Enter")
	time.Sleep(200 * time.Millisecond)
	tm("send-keys", "C-z")
	waitScreen("Stopped")
	prompts := strings.Count(screen(), "IN$ ")
	tm("send-keys", "fg", "Enter")
	// fg prints the job's command as it continues it.
	waitUntil(t, 15*time.Second, func() bool { return strings.Count(screen(), "sleep 30") >= 3 },
		func() string { return "fg did not continue the job:\n" + screen() })
	tm("send-keys", "C-c")
	waitUntil(t, 15*time.Second, func() bool { return strings.Count(screen(), "IN$ ") > prompts },
		func() string { return "no prompt after fg and Ctrl-C:\n" + screen() })
	tm("send-keys", "exit 5", "Enter")
	waitScreen("exec-exit=5")
}

// Acceptance 3: the directory of the control sockets is the user's alone:
// another user cannot open it, and their ps does not list the run; root's
// does. The cross-user part needs root to be another user.
func TestInstanceSocketPrivate(t *testing.T) {
	name := instanceName("priv")
	u := asTestUserIfRoot(t)
	var r *nsbindRun
	var cred *syscall.Credential
	bin, server := "", os.Args[0]
	if u != nil {
		cred, bin, server = u.cred, u.bin, u.bin
	}
	r = startNsbindAs(t, u, "--name", name, "-p", "80:0", "--", server, "__server", "banner", "80")
	list := psList(t, cred, bin)
	ii, ok := findInstance(list, name)
	if !ok {
		t.Fatalf("the user's ps does not list %s: %+v\n%s", name, list, r.stderr.String())
	}
	dir := filepath.Dir(ii.Socket)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	owner := uint32(os.Geteuid())
	if cred != nil {
		owner = cred.Uid
	}
	if st.Mode&0o777 != 0o700 || st.Uid != owner {
		t.Errorf("%s: mode %04o uid %d, want 0700 and %d", dir, st.Mode&0o777, st.Uid, owner)
	}
	if u == nil {
		t.Skip("the rest needs root: another user, and root's view")
	}
	// Root sees every user's instances.
	if ii, ok := findInstance(psList(t, nil, ""), name); !ok || ii.UID != int(cred.Uid) {
		t.Errorf("root's ps: %+v, %v; want %s of uid %d", ii, ok, name, cred.Uid)
	}
	// Another user: nobody.
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534}
	ls := exec.Command("/bin/ls", dir)
	ls.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	if out, err := ls.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("another user lists %s: %v\n%s", dir, err, out)
	}
	if _, ok := findInstance(psList(t, nobody, u.bin), name); ok {
		t.Errorf("another user's ps lists %s", name)
	}
	code, _, stderr := cliAs(t, nobody, u.bin, "port", name, "ls")
	if code != exitFailed || !strings.Contains(stderr, "no instance named "+name) {
		t.Errorf("another user's port ls: exit %d\n%s", code, stderr)
	}
}

// asTestUserIfRoot is asTestUser as root, nil otherwise.
func asTestUserIfRoot(t *testing.T) *testUser {
	t.Helper()
	if os.Getuid() != 0 {
		return nil
	}
	return asTestUser(t)
}

// Acceptance 4: SIGKILL leaves the socket of a dead run; the next ps does
// not list it and removes it.
func TestInstanceGoneAfterKill(t *testing.T) {
	name := instanceName("kill")
	r := startNsbind(t, "--name", name, "-p", "80:0", "--", os.Args[0], "__server", "banner", "80")
	ii, ok := findInstance(psList(t, nil, ""), name)
	if !ok {
		t.Fatalf("ps does not list %s", name)
	}
	r.cmd.Process.Kill()
	r.wait(15 * time.Second)
	if _, err := os.Lstat(ii.Socket); err != nil {
		t.Logf("the socket is gone already: %v", err)
	}
	if _, ok := findInstance(psList(t, nil, ""), name); ok {
		t.Errorf("ps lists %s after SIGKILL", name)
	}
	if _, err := os.Lstat(ii.Socket); !os.IsNotExist(err) {
		t.Errorf("%s is still there after ps: %v", ii.Socket, err)
	}
	// The name is free again.
	r2 := startNsbind(t, "--name", name, "-p", "80:0", "--", os.Args[0], "__server", "banner", "80")
	if _, ok := findInstance(psList(t, nil, ""), name); !ok {
		t.Errorf("the name %s was not free after the run died:\n%s", name, r2.stderr.String())
	}
}

// The instance commands' own argument checks, in-process.
func TestInstanceCommandArgs(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"bad name", []string{"run", "--name", "-x", "true"}, "invalid --name"},
		{"bad name 2", []string{"run", "--name", "a/b", "true"}, "invalid --name"},
		{"port without action", []string{"port", "web"}, "needs an instance and add, rm or ls"},
		{"port bad action", []string{"port", "web", "up", "80"}, `unknown port action "up"`},
		{"port add without spec", []string{"port", "web", "add"}, "needs at least one port spec"},
		{"exec without command", []string{"exec", "web"}, "needs an instance name and a command"},
		{"exec bad env", []string{"exec", "-e", "X", "web", "true"}, `--env "X"`},
		{"stats without name", []string{"stats"}, "needs one instance name"},
		{"stop without name", []string{"stop"}, "needs one instance name"},
		{"ps with args", []string{"ps", "x"}, "takes no arguments"},
		{"no such instance", []string{"stop", "no-such-instance-" + strconv.Itoa(os.Getpid())}, "no instance named no-such-instance-"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != exitFailed || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q, want %d and %q", code, stderr.String(), exitFailed, tt.want)
			}
		})
	}
	for _, cmd := range []string{"ps", "port", "exec", "stats", "stop"} {
		var stdout, stderr bytes.Buffer
		if code := run([]string{cmd, "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "Usage: nsbind "+cmd) {
			t.Errorf("%s --help: exit %d\n%s%s", cmd, code, stdout.String(), stderr.String())
		}
	}
}

// nsbind stop of a run whose server ignores SIGTERM says so, each time,
// with what ends the run, rather than the socket's timeout.
func TestStopTimeoutSaysSo(t *testing.T) {
	name := instanceName("stoptimeout")
	r := startNsbind(t, "--name", name, "--", "sh", "-c", `trap '' TERM; echo ready; while :; do sleep 1; done`)
	r.waitOutput("ready")
	want := fmt.Sprintf("nsbind: the instance %s did not end within 100ms (its server ignores SIGTERM?): kill -9 %d ends it at once\n",
		name, r.cmd.Process.Pid)
	// The deadline of the wait and that of the connection used to race:
	// one stop in five or so said "read unix ...: i/o timeout".
	for range 20 {
		code, _, stderr := runNsbind(t, "stop", "--timeout", "100ms", name)
		if code != exitFailed || stderr != want {
			t.Fatalf("nsbind stop --timeout 100ms: exit %d, stderr\n%s\nwant %d and\n%s", code, stderr, exitFailed, want)
		}
	}
	select {
	case <-r.done:
		t.Fatalf("the run ended (%d) although its server ignores SIGTERM", r.code)
	default:
	}
}
