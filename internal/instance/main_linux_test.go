package instance

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the other processes of the tests: a server that
// the test kills, and clients of another user. The role comes from the
// environment, which only these tests set.
const roleEnv = "NSBIND_INSTANCE_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		os.Exit(childServe())
	case "dial":
		os.Exit(childDial())
	case "list":
		os.Exit(childList())
	default:
		fmt.Fprintln(os.Stderr, "unknown role", os.Getenv(roleEnv))
		os.Exit(2)
	}
}

// childDirs are the directories a child uses, from its environment.
func childDirs() dirs {
	return dirs{xdg: os.Getenv("NSBIND_INSTANCE_TEST_XDG"), tmp: os.Getenv("NSBIND_INSTANCE_TEST_TMP"),
		runUser: os.Getenv("NSBIND_INSTANCE_TEST_RUNUSER"), euid: os.Geteuid(), uidMap: readUIDMap()}
}

// childServe serves NSBIND_INSTANCE_TEST_NAME, says "ready PATH", and ends
// when its stdin does.
func childServe() int {
	s, err := listenIn(childDirs(), os.Getenv("NSBIND_INSTANCE_TEST_NAME"), newTestHandler())
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	fmt.Println("ready", s.Path())
	io.Copy(io.Discard, os.Stdin)
	cancel()
	if err := <-done; err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// childResult is what the client children print.
type childResult struct {
	Err   string         `json:"err,omitempty"`
	Errno int            `json:"errno,omitempty"`
	Info  *Info          `json:"info,omitempty"`
	List  []InstanceInfo `json:"list,omitempty"`
}

func printResult(r childResult, err error) int {
	if err != nil {
		r.Err = err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			r.Errno = int(errno)
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// childDial connects to NSBIND_INSTANCE_TEST_PATH and asks for Info.
func childDial() int {
	c, err := dialPath(os.Getenv("NSBIND_INSTANCE_TEST_PATH"))
	if err != nil {
		return printResult(childResult{}, err)
	}
	defer c.Close()
	info, err := c.Info(context.Background())
	return printResult(childResult{Info: &info}, err)
}

// childList lists the instances its user sees.
func childList() int {
	l, err := listIn(childDirs())
	return printResult(childResult{List: l}, err)
}

// child is a running copy of the test binary in a role.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
}

// startChild runs the test binary bin in role, with env added, as cred
// (nil: this user).
func startChild(t *testing.T, bin, role string, cred *syscall.Credential, env ...string) *child {
	t.Helper()
	return startChildAttr(t, bin, role, &syscall.SysProcAttr{Credential: cred}, env...)
}

// startChildAttr is startChild with the child's SysProcAttr (its
// Pdeathsig is set here).
func startChildAttr(t *testing.T, bin, role string, attr *syscall.SysProcAttr, env ...string) *child {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{roleEnv + "=" + role, "PATH=" + os.Getenv("PATH")}, env...)
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	attr.Pdeathsig = syscall.SIGKILL
	cmd.SysProcAttr = attr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		stdin.Close()
		timer := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		defer timer.Stop()
		cmd.Wait()
	})
	return c
}

// line reads the child's next line of output, within 10 s.
func (c *child) line(t *testing.T) string {
	t.Helper()
	type res struct {
		s   string
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := c.out.ReadString('\n')
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("reading the child's output: %v (%q)", r.err, r.s)
		}
		return strings.TrimSuffix(r.s, "\n")
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		t.Fatal("the child said nothing for 10 s")
		return ""
	}
}

// result reads a client child's result.
func (c *child) result(t *testing.T) childResult {
	t.Helper()
	var r childResult
	if err := json.Unmarshal([]byte(c.line(t)), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// ready waits for a serving child and returns its socket's path.
func (c *child) ready(t *testing.T) string {
	t.Helper()
	l := c.line(t)
	path, ok := strings.CutPrefix(l, "ready ")
	if !ok {
		t.Fatalf("the server child said %q", l)
	}
	return path
}

// self is the test binary's path (os.Args[0] may be relative, and
// children start in /).
func self(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// otherUser is the unprivileged test user root's tests run processes as,
// with a copy of the test binary that user can run.
type otherUser struct {
	uid, gid int
	cred     *syscall.Credential
	bin      string
}

// asOtherUser prepares running as NSBIND_TEST_USER (default nsbind-test,
// which scripts/test.sh creates). Only root can: the test skips otherwise.
func asOtherUser(t *testing.T) *otherUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user; scripts/test.sh runs it as root")
	}
	name := os.Getenv("NSBIND_TEST_USER")
	if name == "" {
		name = "nsbind-test"
	}
	u, err := user.Lookup(name)
	if err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("test user %s: %v (scripts/test.sh creates it)", name, err)
		}
		t.Skipf("no test user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The go tool builds the test binary in a directory only root reads.
	dir := tempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "instance.test")
	copyBinary(t, bin)
	return &otherUser{uid: uid, gid: gid, bin: bin,
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: false}}
}

var copyOnce sync.Mutex

func copyBinary(t *testing.T, to string) {
	t.Helper()
	copyOnce.Lock()
	defer copyOnce.Unlock()
	in, err := os.Open(self(t))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// tempDir is a short temporary directory (t.TempDir's paths, with the test
// name in them, can outgrow a unix socket's 108 bytes).
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nsi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// testDirs are directories for one test: its own /tmp and /run/user.
func testDirs(t *testing.T) dirs {
	t.Helper()
	tmp := tempDir(t)
	return dirs{tmp: tmp, runUser: filepath.Join(tmp, "run-user"), euid: os.Geteuid(), uidMap: readUIDMap()}
}

// childEnv tells a child to use d's directories.
func childEnv(d dirs) []string {
	return []string{"NSBIND_INSTANCE_TEST_TMP=" + d.tmp, "NSBIND_INSTANCE_TEST_RUNUSER=" + d.runUser}
}
