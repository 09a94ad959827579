package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/nsutil"
)

// confineCheck is what the confinecheck test server found, from its own
// side: "ok" (with ":CONTENT" for a read) or the errno its syscall got.
type confineCheck struct {
	Secret       string `json:"secret"`
	Socket       string `json:"socket"`
	WriteOutside string `json:"write_outside"`
	WriteHome    string `json:"write_home"`
	WriteWork    string `json:"write_work"`
	WriteTmp     string `json:"write_tmp"`
	// KillHelper is kill(1, SIGABRT), KillHelperTerm kill(1, SIGTERM):
	// pid 1 is the helper, Pid1 its command line.
	KillHelper     string `json:"kill_helper"`
	KillHelperTerm string `json:"kill_helper_term"`
	Pid1           string `json:"pid1"`
	// KillNsbind is kill(PID, SIGTERM) with nsbind's pid on the host.
	KillNsbind  string `json:"kill_nsbind"`
	SSHAuthSock string `json:"ssh_auth_sock"`
}

// confineNsbindPidEnv carries nsbind's host pid to the confinecheck
// server (set by a shell that then execs nsbind, so $$ is nsbind's pid).
const confineNsbindPidEnv = "CONFINECHECK_NSBIND_PID"

// confineTestServer is the test server of --confine:
//
//	confinecheck PORT SECRET SOCKET OUTSIDE HOMEFILE KILL
//
// tries to read SECRET, connect to the unix socket SOCKET, create OUTSIDE
// and HOMEFILE, a file in its working directory and one in /tmp, and with
// KILL "kill" to signal pid 1 and nsbind; prints the results as one JSON
// line (confineCheck), then "listening", and answers each connection on
// [::]:PORT with "confinecheck\n".
func confineTestServer(args []string) (int, bool) {
	if args[0] != "confinecheck" {
		return 0, false
	}
	if len(args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: __server confinecheck PORT SECRET SOCKET OUTSIDE HOMEFILE KILL")
		return 2, true
	}
	port, secret, socket, outside, homeFile, kill := args[1], args[2], args[3], args[4], args[5], args[6] == "kill"
	result := func(err error) string {
		var errno syscall.Errno
		switch {
		case err == nil:
			return "ok"
		case errors.As(err, &errno):
			return unix.ErrnoName(errno)
		}
		return err.Error()
	}
	create := func(path string) string {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			os.Remove(path)
		}
		return result(err)
	}
	var c confineCheck
	if b, err := os.ReadFile(secret); err == nil {
		c.Secret = "ok:" + string(b)
	} else {
		c.Secret = result(err)
	}
	if conn, err := net.Dial("unix", socket); err == nil {
		conn.Close()
		c.Socket = "ok"
	} else {
		c.Socket = result(err)
	}
	c.WriteOutside = create(outside)
	c.WriteHome = create(homeFile)
	c.WriteWork = create("confinecheck-file")
	c.WriteTmp = create(filepath.Join("/tmp", "confinecheck-"+port))
	b, _ := os.ReadFile("/proc/1/cmdline")
	c.Pid1, _, _ = strings.Cut(string(b), "\x00")
	if kill {
		c.KillHelper = result(syscall.Kill(1, syscall.SIGABRT))
		c.KillHelperTerm = result(syscall.Kill(1, syscall.SIGTERM))
		if pid, err := strconv.Atoi(os.Getenv(confineNsbindPidEnv)); err == nil && pid > 1 && pid != os.Getpid() {
			c.KillNsbind = result(syscall.Kill(pid, syscall.SIGTERM))
		}
	}
	c.SSHAuthSock = os.Getenv("SSH_AUTH_SOCK")
	out, _ := json.Marshal(c)
	fmt.Printf("%s\n", out)
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	fmt.Println("listening")
	for {
		conn, err := ln.Accept()
		if err != nil {
			return 1, true
		}
		fmt.Fprintf(conn, "confinecheck\n")
		conn.Close()
	}
}

// confineSetup is the user's world a confined server must not reach: a
// home with a secret in ~/.ssh, a runtime directory with a listening unix
// socket, and a working directory inside the home.
type confineSetup struct {
	home, runtime, work string
	secret, content     string
	socket              string
	// outside is a path the user may create on the host, outside the
	// home, the working directory and /tmp; homeFile one in the home.
	outside, homeFile string
	env               []string
}

func randomName(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newConfineSetup makes the world. As an unprivileged user it is the real
// one: the secret goes into the real ~/.ssh and is removed afterwards,
// the socket into $XDG_RUNTIME_DIR if there is one. As root, whose home
// is not a user's, it is a home and a runtime directory of the test's,
// outside /tmp (which --confine hides whole) so that the home's own
// hiding is what is tested.
func newConfineSetup(t *testing.T) *confineSetup {
	t.Helper()
	requireUserns(t)
	parent := "/var/tmp"
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() || unix.Access(parent, unix.W_OK) != nil {
		parent = os.TempDir()
	}
	base, err := os.MkdirTemp(parent, "nsbind-confine-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	s := &confineSetup{}
	home := os.Getenv("HOME")
	if fi, err := os.Stat(home); os.Getuid() == 0 || err != nil || !fi.IsDir() || unix.Access(home, unix.W_OK) != nil {
		home = filepath.Join(base, "home")
		if err := os.Mkdir(home, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.home = home
	name := randomName(t)
	ssh := filepath.Join(home, ".ssh")
	if _, err := os.Stat(ssh); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(ssh, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(ssh) })
	}
	s.secret = filepath.Join(ssh, "nsbind-test-secret-"+name)
	s.content = "secret-" + name
	if err := os.WriteFile(s.secret, []byte(s.content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(s.secret) })
	s.runtime = os.Getenv("XDG_RUNTIME_DIR")
	if fi, err := os.Stat(s.runtime); os.Getuid() == 0 || err != nil || !fi.IsDir() || unix.Access(s.runtime, unix.W_OK) != nil {
		s.runtime = filepath.Join(base, "run")
		if err := os.Mkdir(s.runtime, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.socket = filepath.Join(s.runtime, "nsbind-test-"+name+".sock")
	ln, err := net.Listen("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // removes the socket file too
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	s.work, err = os.MkdirTemp(home, "nsbind-confine-work-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.work) })
	s.outside = filepath.Join(base, "outside-"+name)
	s.homeFile = filepath.Join(home, "nsbind-confine-"+name)
	s.env = append(os.Environ(), "HOME="+home, "XDG_RUNTIME_DIR="+s.runtime, "SSH_AUTH_SOCK="+s.socket)
	if os.Getuid() == 0 {
		// The server is the sudo user's process: the home, the runtime
		// directory and the place outside are that user's, as they are
		// when the user runs sudo nsbind run --confine from a directory of
		// theirs, so that only the confinement keeps the server out.
		uid, gid := serverUID(), serverGID()
		err := filepath.WalkDir(base, func(p string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// start runs nsbind with args, then the confinecheck server, in the
// working directory and with the setup's environment, and returns what
// the server found. nsbind is started through a shell that execs it, so
// that the server learns nsbind's pid on the host.
func (s *confineSetup) start(t *testing.T, kill bool, args ...string) (*nsbindRun, confineCheck) {
	t.Helper()
	killArg := "nokill"
	if kill {
		killArg = "kill"
	}
	sh := needProgram(t, "sh")
	args = append(args, "-p", "80:0", "--", selfBinary(t), "__server", "confinecheck", "80",
		s.secret, s.socket, s.outside, s.homeFile, killArg)
	r := startNsbindIn(t, t.TempDir(), func(cmd *exec.Cmd) {
		cmd.Args[0] = selfBinary(t)
		cmd.Args = append([]string{"sh", "-c", confineNsbindPidEnv + `=$$ exec "$0" "$@"`}, cmd.Args...)
		cmd.Path = sh
		cmd.Dir = s.work
		cmd.Env = s.env
	}, args...)
	r.waitOutput("listening")
	var c confineCheck
	line, _, _ := strings.Cut(r.stdout.String(), "\n")
	if err := json.Unmarshal([]byte(line), &c); err != nil {
		t.Fatalf("the server's report %q: %v", line, err)
	}
	t.Logf("the server found: %+v", c)
	if got := dialBanner(t, r.addr(4)); got != "confinecheck\n" {
		t.Fatalf("through the host port: %q", got)
	}
	return r, c
}

// selfBinary is the test binary's absolute path, for a command run in
// another working directory.
func selfBinary(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// dialBanner reads what the server at ap sends.
func dialBanner(t *testing.T, ap netip.AddrPort) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", ap.String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

// oneOf fails unless got is one of want.
func oneOf(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if got == w {
			return
		}
	}
	t.Errorf("%s: got %q, want one of %q", what, got, want)
}

// signalScoping reports whether the kernel scopes signals (Landlock ABI 6).
func signalScoping() bool { return nsutil.LandlockABI() >= 6 }

// Acceptance 1: a confined server cannot read the secret in ~/.ssh,
// cannot connect to the socket in the runtime directory, cannot write
// outside its working directory and /tmp, and cannot signal the helper
// (pid 1) or nsbind; and it does not get SSH_AUTH_SOCK.
func TestConfineKeepsTheServerIn(t *testing.T) {
	s := newConfineSetup(t)
	kill := signalScoping()
	if !kill {
		t.Log("this kernel has no Landlock signal scoping: the signals are not tried")
	}
	r, c := s.start(t, kill, "--confine")
	if strings.HasPrefix(c.Secret, "ok") {
		t.Errorf("the confined server read the secret: %q", c.Secret)
	}
	oneOf(t, "reading the secret", c.Secret, "ENOENT", "EACCES", "EPERM")
	oneOf(t, "connecting to the runtime directory's socket", c.Socket, "ENOENT", "EACCES", "EPERM")
	oneOf(t, "creating a file outside the home", c.WriteOutside, "EROFS", "EACCES", "EPERM")
	oneOf(t, "creating a file in the home", c.WriteHome, "EROFS", "EACCES", "EPERM", "ENOENT")
	oneOf(t, "creating a file in the working directory", c.WriteWork, "ok")
	oneOf(t, "creating a file in /tmp", c.WriteTmp, "ok")
	if c.SSHAuthSock != "" {
		t.Errorf("the confined server got SSH_AUTH_SOCK=%s", c.SSHAuthSock)
	}
	if kill {
		if c.Pid1 != nsutil.RoleInit {
			t.Fatalf("pid 1 inside is %q, not the helper", c.Pid1)
		}
		oneOf(t, "kill(1, SIGABRT)", c.KillHelper, "EPERM")
		oneOf(t, "kill(1, SIGTERM)", c.KillHelperTerm, "EPERM")
		// nsbind's pid is not in the server's PID namespace.
		oneOf(t, "kill(nsbind, SIGTERM)", c.KillNsbind, "ESRCH", "EPERM")
	}
	if n := strings.Count(r.stderr.String(), "--confine:"); n != 0 && signalScoping() {
		t.Errorf("a note although this kernel has Landlock with scoping:\n%s", r.stderr.String())
	}
	// Nothing the server tried ended the run, and it left nothing behind.
	if got := dialBanner(t, r.addr(6)); got != "confinecheck\n" {
		t.Fatalf("after the checks: %q", got)
	}
	for _, p := range []string{s.outside, s.homeFile} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created", p)
		}
	}
}

// Acceptance 3: the same run without --confine reads the secret and
// reaches the socket (the checks can fail). And issue 14: even so, where
// the kernel scopes signals the server cannot signal the helper, and the
// run goes on.
func TestWithoutConfineTheChecksFail(t *testing.T) {
	s := newConfineSetup(t)
	kill := signalScoping()
	r, c := s.start(t, kill)
	if c.Secret != "ok:"+s.content {
		t.Errorf("without --confine the server did not read the secret: %q", c.Secret)
	}
	oneOf(t, "connecting to the runtime directory's socket", c.Socket, "ok")
	oneOf(t, "creating a file outside the home", c.WriteOutside, "ok")
	if c.SSHAuthSock != s.socket {
		t.Errorf("without --confine SSH_AUTH_SOCK is %q, want %q", c.SSHAuthSock, s.socket)
	}
	if !kill {
		t.Skip("this kernel has no Landlock signal scoping (ABI 6)")
	}
	if c.Pid1 != nsutil.RoleInit {
		t.Fatalf("pid 1 inside is %q, not the helper", c.Pid1)
	}
	oneOf(t, "kill(1, SIGABRT)", c.KillHelper, "EPERM")
	oneOf(t, "kill(1, SIGTERM)", c.KillHelperTerm, "EPERM")
	oneOf(t, "kill(nsbind, SIGTERM)", c.KillNsbind, "ESRCH", "EPERM")
	if got := dialBanner(t, r.addr(4)); got != "confinecheck\n" {
		t.Fatalf("after the signals: %q", got)
	}
	select {
	case <-r.done:
		t.Fatalf("nsbind ended (status %d):\n%s", r.code, r.stderr.String())
	default:
	}
}

// Acceptance 2: python3 -m http.server 80, confined, serves its working
// directory through the host port.
func TestConfinePythonHTTPServer(t *testing.T) {
	// The system's python: one of a version manager in the home (pyenv's
	// shim) would need its tree given with --allow-read.
	python := "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		python = needProgram(t, "python3")
	}
	work := serverTempDir(t)
	if err := os.WriteFile(filepath.Join(work, "index.html"), []byte("hello from a confined python\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := startNsbindIn(t, t.TempDir(), func(cmd *exec.Cmd) { cmd.Path, cmd.Dir = selfBinary(t), work },
		"--confine", "-p", "80:0", "--", python, "-m", "http.server", "80")
	httpGet(t, netip.MustParseAddr("127.0.0.1"), r.addr(4), "hello from a confined python")
	httpGet(t, netip.IPv6Loopback(), r.addr(6), "hello from a confined python")
}

// Acceptance 2: nginx, confined, serves a docroot it may only read
// (--allow-read) and writes its logs where --allow-write lets it; both
// lie in /tmp, which the server does not see otherwise.
func TestConfineNginx(t *testing.T) {
	nginx := needProgram(t, "nginx")
	// nginx run by root would switch its workers to another user: as
	// root, run nsbind as the test user.
	var u *testUser
	work, docroot, logs := t.TempDir(), t.TempDir(), t.TempDir()
	if os.Getuid() == 0 {
		u = asTestUser(t)
		work = u.dir
		docroot = filepath.Join(filepath.Dir(u.dir), "docroot")
		logs = filepath.Join(filepath.Dir(u.dir), "logs")
		for _, d := range []string{docroot, logs} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(logs, int(u.cred.Uid), int(u.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(docroot, "index.html"), []byte("hello from a confined nginx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(work, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[3]s/error.log;
events {}
http {
	access_log %[3]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 80;
		listen [::]:80;
		root %[2]s;
	}
}
`, work, docroot, logs)), 0o644); err != nil {
		t.Fatal(err)
	}
	prepare := func(cmd *exec.Cmd) { cmd.Path, cmd.Dir = selfBinary(t), work }
	if u != nil {
		prepare = u.prepare // its work directory is work
	}
	r := startNsbindIn(t, work, prepare, "--confine", "--allow-read", docroot, "--allow-write", logs,
		"-p", "80:0", "--", nginx, "-p", work, "-e", filepath.Join(logs, "error.log"), "-c", conf, "-g", "daemon off;")
	httpGet(t, netip.MustParseAddr("127.0.0.1"), r.addr(4), "hello from a confined nginx")
	httpGet(t, netip.IPv6Loopback(), r.addr(6), "hello from a confined nginx")
	waitUntil(t, 10*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(logs, "access.log"))
		return strings.Count(string(b), "GET / ") >= 2
	}, func() string {
		b, _ := os.ReadFile(filepath.Join(logs, "access.log"))
		return fmt.Sprintf("nginx did not log both requests in --allow-write's directory:\n%s", b)
	})
}

// --allow-read and --allow-write without --confine, and a path that does
// not exist, fail before anything starts (125), saying why.
func TestConfineFlagErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "not-there")
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"allow-read without confine", []string{"--allow-read", "/etc"}, "add --confine"},
		{"allow-write without confine", []string{"--allow-write", t.TempDir()}, "add --confine"},
		{"missing allow-read", []string{"--confine", "--allow-read", missing}, "--allow-read " + missing},
		{"missing allow-write", []string{"--confine", "--allow-write", missing}, "--allow-write " + missing},
	} {
		t.Run(tt.name, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "started")
			code, _, stderr := runNsbind(t, append(append([]string{"run"}, tt.args...), "--", "touch", marker)...)
			if code != exitFailed || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, want %d with %q; stderr:\n%s", code, exitFailed, tt.want, stderr)
			}
			if strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("more than one line:\n%s", stderr)
			}
			if _, err := os.Stat(marker); err == nil {
				t.Errorf("the server ran")
			}
		})
	}
}

// --root --confine: uid 0 inside with the namespace's capabilities still
// cannot read the secret, and cannot unmount what hides the home
// (Landlock forbids the server any mount).
func TestConfineRoot(t *testing.T) {
	s := newConfineSetup(t)
	if nsutil.LandlockABI() == 0 {
		t.Skip("--root --confine needs Landlock")
	}
	script := `id -u; cat "$1" && echo READ; umount -l "$HOME" 2>/dev/null && echo UNMOUNTED; cat "$1" && echo READ; echo x > written && echo WROTE`
	code, out, stderr := runNsbindIn(t, s.work, s.env, "run", "--root", "--confine", "--", "sh", "-c", script, "sh", s.secret)
	if code != 0 || !strings.HasPrefix(out, "0\n") || strings.Contains(out, "READ") ||
		strings.Contains(out, "UNMOUNTED") || !strings.Contains(out, "WROTE") {
		t.Fatalf("--root --confine: exit %d\n%s%s", code, out, stderr)
	}
}

// Root's --confine hides the home of the user the server runs as (the
// sudo user), not root's: run from that user's home with root's HOME and
// runtime directory in the environment, as sudo -H or su give them, the
// server still cannot read the user's ~/.ssh, and its $HOME is the user's.
func TestConfineAsRootHidesTheServerUsersHome(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: the server runs as the sudo user; scripts/test.sh runs it as root")
	}
	requireUserns(t)
	u, err := user.LookupId(strconv.Itoa(serverUID()))
	if err != nil {
		t.Fatalf("the server's user %d: %v", serverUID(), err)
	}
	if fi, err := os.Stat(u.HomeDir); err != nil || !fi.IsDir() || u.HomeDir == "/" {
		t.Skipf("the server's user %s has no home directory of its own (%q)", u.Username, u.HomeDir)
	}
	uid, gid := serverUID(), serverGID()
	ssh := filepath.Join(u.HomeDir, ".ssh")
	if _, err := os.Lstat(ssh); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(ssh, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(ssh) })
		if err := os.Chown(ssh, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	name := randomName(t)
	secret := filepath.Join(ssh, "nsbind-test-secret-"+name)
	if err := os.WriteFile(secret, []byte("secret-"+name), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(secret) })
	if err := os.Chown(secret, uid, gid); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "HOME=/root", "XDG_RUNTIME_DIR=/run/user/0")
	script := `echo "home=$HOME"; cat "$1" && echo READ; exit 0`
	code, out, stderr := runNsbindIn(t, u.HomeDir, env, "run", "--confine", "--", "sh", "-c", script, "sh", secret)
	if code != 0 || !strings.HasPrefix(out, "home="+u.HomeDir+"\n") {
		t.Fatalf("exit %d, want 0 and home=%s:\n%s%s", code, u.HomeDir, out, stderr)
	}
	if strings.Contains(out, "READ") {
		t.Errorf("run as root from the server user's home, the confined server read its ~/.ssh:\n%s%s", out, stderr)
	}
}

// --to-host with --confine: the confined server reaches a host service
// on the host's loopback.
func TestConfineToHost(t *testing.T) {
	curl := needProgram(t, "curl")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "hello from the host")
	}))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	code, out, stderr := runNsbindIn(t, serverTempDir(t), nil, "run", "--confine", "--to-host", strconv.Itoa(port), "--",
		curl, "-sS", "--max-time", "10", fmt.Sprintf("http://127.0.0.1:%d/", port))
	if code != 0 || out != "hello from the host\n" {
		t.Fatalf("exit %d: %q\n%s", code, out, stderr)
	}
}

// runNsbindIn is runNsbind in the working directory dir and with the
// environment env (nil: the test's).
func runNsbindIn(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	return runNsbindWith(t, func(cmd *exec.Cmd) { cmd.Path, cmd.Dir, cmd.Env = selfBinary(t), dir, env }, args...)
}
