package instance

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve starts s.Serve and returns a function that stops it and waits for
// Serve's return (within 10 s); the test's cleanup calls it too.
func serve(t *testing.T, s *Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var err error
	waited := false
	stop = func() error {
		cancel()
		if !waited {
			waited = true
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return within 10 s of its context's end")
			}
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func listenServe(t *testing.T, d dirs, name string, h Handler) (*Server, func() error) {
	t.Helper()
	s, err := listenIn(d, name, h)
	if err != nil {
		t.Fatal(err)
	}
	return s, serve(t, s)
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRequests(t *testing.T) {
	d := testDirs(t)
	h := newTestHandler()
	s, _ := listenServe(t, d, "web", h)
	ctx := ctx10(t)

	c, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Name() != "web" || c.Pid() != os.Getpid() || c.UID() != os.Geteuid() {
		t.Errorf("client: name %q pid %d uid %d", c.Name(), c.Pid(), c.UID())
	}

	added, err := c.PortAdd(ctx, []string{"8080", "8081"})
	if err != nil || len(added) != 2 || added[0].Host != "127.0.0.1:8080" {
		t.Fatalf("PortAdd = %+v, %v", added, err)
	}
	// A busy port's error keeps its errno across the socket, and changes
	// nothing.
	_, err = c.PortAdd(ctx, []string{"8082", "busy"})
	var re *RemoteError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &re) || !strings.Contains(re.Text, "127.0.0.1:8080") {
		t.Errorf("PortAdd of a busy port: %v, want EADDRINUSE with the handler's text", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "web" || info.Pid != os.Getpid() || info.UID != os.Geteuid() ||
		strings.Join(info.Command, " ") != "test-server -v" || !info.Started.Equal(h.started) || len(info.Sockets) != 2 {
		t.Errorf("Info = %+v", info)
	}
	removed, err := c.PortRm(ctx, []string{"8080"})
	if err != nil || len(removed) != 1 || removed[0].Spec != "8080" {
		t.Errorf("PortRm = %+v, %v", removed, err)
	}
	if _, err := c.PortRm(ctx, []string{"9999"}); err == nil || errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("PortRm of an unpublished spec: %v", err)
	}
	ls, err := c.PortList(ctx)
	if err != nil || len(ls) != 1 || ls[0].Spec != "8081" {
		t.Errorf("PortList = %+v, %v", ls, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || len(st) != 1 || st[0].Host != "127.0.0.1:8081" || st[0].BytesOut != 200 {
		t.Errorf("Stats = %+v, %v", st, err)
	}

	// Stop: the handler ends the run (here: Close, as the parent's end of
	// Serve would), and Stop returns when the connection closes.
	go func() {
		<-h.stop
		s.Close()
	}()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket after the run's end: %v, want it gone", err)
	}
	if _, err := os.Lstat(filepath.Dir(s.Path())); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the empty directory after the run's end: %v, want it gone", err)
	}
}

func TestNameTaken(t *testing.T) {
	d := testDirs(t)
	s, stop := listenServe(t, d, "web", newTestHandler())
	_, err := listenIn(d, "web", newTestHandler())
	var nt *NameTakenError
	if !errors.As(err, &nt) || nt.Pid != os.Getpid() || nt.Name != "web" {
		t.Fatalf("second Listen of web: %v, want NameTakenError with pid %d", err, os.Getpid())
	}
	if want := "an instance named web is running (pid "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q", err)
	}
	// The live socket is untouched: the first still answers.
	if c, err := dialIn(d, "web"); err != nil {
		t.Errorf("dialing web after the refused Listen: %v", err)
	} else {
		c.Close()
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Serve's end: %v", err)
	}
	s2, err := listenIn(d, "web", newTestHandler())
	if err != nil {
		t.Fatalf("Listen after the holder ended: %v", err)
	}
	s2.Close()
	if _, err := listenIn(d, "no/slash", newTestHandler()); err == nil {
		t.Error("Listen accepted an invalid name")
	}
}

// staleSocket leaves at path a socket nobody listens on, as a SIGKILLed run
// does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func TestStaleSocketRetaken(t *testing.T) {
	d := testDirs(t)
	dir, err := d.ensure()
	if err != nil {
		t.Fatal(err)
	}
	dir.Close()
	path := filepath.Join(d.own(), "web.sock")
	staleSocket(t, path)
	staleSocket(t, filepath.Join(d.own(), "old.sock"))

	s, _ := listenServe(t, d, "web", newTestHandler())
	if s.Path() != path {
		t.Fatalf("path %s, want %s", s.Path(), path)
	}
	// List removes the other stale socket and lists the live one.
	l, err := listIn(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Name != "web" || l[0].Socket != path || l[0].Error != "" {
		t.Errorf("List = %+v, want web alone", l)
	}
	if _, err := os.Lstat(filepath.Join(d.own(), "old.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale old.sock after List: %v, want removed", err)
	}
	// Dial of a stale name: no instance, and the socket is removed.
	staleSocket(t, filepath.Join(d.own(), "gone.sock"))
	if _, err := dialIn(d, "gone"); !errors.Is(err, ErrNoInstance) {
		t.Errorf("Dial of a stale socket: %v, want ErrNoInstance", err)
	}
	if _, err := os.Lstat(filepath.Join(d.own(), "gone.sock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale gone.sock after Dial: %v, want removed", err)
	}
	if _, err := dialIn(d, "never"); !errors.Is(err, ErrNoInstance) {
		t.Errorf("Dial of an unknown name: %v, want ErrNoInstance", err)
	}
	// A file that is not a socket is never removed.
	other := filepath.Join(d.own(), "notes.sock")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listIn(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("a regular file named .sock was touched: %v", err)
	}
}

func TestDefaultName(t *testing.T) {
	d := testDirs(t)
	s, _ := listenServe(t, d, "", newTestHandler())
	if !regexp.MustCompile(`^nsbind-[0-9a-f]{4}$`).MatchString(s.Name()) {
		t.Fatalf("default name %q", s.Name())
	}
	c, err := dialIn(d, s.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := c.Info(ctx10(t))
	if err != nil || info.Name != s.Name() {
		t.Errorf("Info = %+v, %v", info, err)
	}
}

// pipes returns n pipes: the ends the test keeps (r) and those it passes (w).
type pipe struct{ r, w *os.File }

func newPipe(t *testing.T) pipe {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return pipe{r, w}
}

func TestExecPassesThreeFiles(t *testing.T) {
	d := testDirs(t)
	listenServe(t, d, "web", newTestHandler())
	c, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stdin, stdout, stderr := newPipe(t), newPipe(t), newPipe(t)
	e, err := c.Exec(ctx10(t), ExecRequest{
		Args:  []string{"sh", "-c", `read x; echo "out:$x $EXTRA"; echo err >&2; exit 3`},
		Env:   []string{"EXTRA=env"},
		Files: []*os.File{stdin.r, stdout.w, stderr.w},
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Pid <= 0 {
		t.Errorf("pid %d", e.Pid)
	}
	// Only the process (and nobody else) keeps the passed ends now: the
	// reads below end at EOF only if the server closed its copies.
	stdin.r.Close()
	stdout.w.Close()
	stderr.w.Close()
	stdin.w.WriteString("hi\n")
	stdin.w.Close()
	out, err := io.ReadAll(stdout.r)
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := io.ReadAll(stderr.r)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "handler: sh\nout:hi env\n" || string(errOut) != "err\n" {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
	st, err := e.Wait()
	if err != nil || st != (ExitStatus{Code: 3}) {
		t.Errorf("Wait = %+v, %v, want code 3", st, err)
	}
	// The client is still usable: exec had a connection of its own.
	if _, err := c.Info(ctx10(t)); err != nil {
		t.Errorf("Info after exec: %v", err)
	}
	// A command that cannot start is an error with its errno.
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	_, err = c.Exec(ctx10(t), ExecRequest{Args: []string{"/nonexistent/cmd"}, Files: []*os.File{null, null, null}})
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("exec of a missing command: %v, want ENOENT", err)
	}
}

func TestExecSignalAndHangup(t *testing.T) {
	d := testDirs(t)
	h := newTestHandler()
	listenServe(t, d, "web", h)
	c, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	files := []*os.File{null, null, null}

	e, err := c.Exec(ctx10(t), ExecRequest{Args: []string{"sleep", "100"}, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := e.Wait(); err != nil || st != (ExitStatus{Signal: int(syscall.SIGTERM)}) {
		t.Errorf("Wait after SIGTERM = %+v, %v", st, err)
	}

	// A client that hangs up sends its process SIGHUP.
	e, err = c.Exec(ctx10(t), ExecRequest{Args: []string{"sleep", "100"}, Files: files})
	if err != nil {
		t.Fatal(err)
	}
	p := h.lastProc()
	e.Close()
	select {
	case <-p.waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the process of a client that hung up still runs after 10 s")
	}
	if p.status != (ExitStatus{Signal: int(syscall.SIGHUP)}) {
		t.Errorf("status %+v, want SIGHUP", p.status)
	}
}

func TestExecNeedsThreeFiles(t *testing.T) {
	d := testDirs(t)
	s, _ := listenServe(t, d, "web", newTestHandler())
	// The client checks; a raw connection shows the server checks too.
	c, err := dialPath(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.c.send(msgExec, ExecRequest{Args: []string{"true"}}, os.Stdin); err != nil {
		t.Fatal(err)
	}
	if _, err := c.c.expect(msgExecStarted, nil); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("exec with one file: %v, want EINVAL", err)
	}
}

func TestServeReturnsAfterGoroutines(t *testing.T) {
	d := testDirs(t)
	h := newTestHandler()
	s, stop := listenServe(t, d, "web", h)
	idle, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	c, err := dialIn(d, "web")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	e, err := c.Exec(ctx10(t), ExecRequest{Args: []string{"sleep", "100"}, Files: []*os.File{null, null, null}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := h.lastProc()

	if err := stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// Serve returned: its exec waiter had reaped the process it killed.
	select {
	case <-p.waited:
	default:
		t.Fatal("Serve returned before its exec goroutine had reaped the process")
	}
	if p.status != (ExitStatus{Signal: int(syscall.SIGKILL)}) {
		t.Errorf("the exec'd process at shutdown: %+v, want killed", p.status)
	}
	if _, err := e.Wait(); err == nil {
		// The exit status may still have been sent before the close.
		t.Log("the exit status came before the connection closed")
	}
	// The idle connection was closed.
	idle.c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, _, err := idle.c.recv(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("idle connection after Serve: %v, want EOF", err)
	}
	if _, err := os.Lstat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Serve: %v", err)
	}
}

// TestSIGKILLLeavesStaleSocket: a run killed with SIGKILL cannot remove
// its socket; the next List does, and the name is free again.
func TestSIGKILLLeavesStaleSocket(t *testing.T) {
	d := testDirs(t)
	ch := startChild(t, self(t), "serve", nil, append(childEnv(d), "NSBIND_INSTANCE_TEST_NAME=web")...)
	path := ch.ready(t)
	l, err := listIn(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 1 || l[0].Name != "web" || l[0].Pid != ch.cmd.Process.Pid {
		t.Fatalf("List = %+v, want web of pid %d", l, ch.cmd.Process.Pid)
	}
	_, err = listenIn(d, "web", newTestHandler())
	var nt *NameTakenError
	if !errors.As(err, &nt) || nt.Pid != ch.cmd.Process.Pid {
		t.Fatalf("Listen of a name a live child holds: %v", err)
	}

	ch.cmd.Process.Kill()
	ch.cmd.Wait()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the killed run's socket: %v, want it left behind", err)
	}
	l, err = listIn(d)
	if err != nil || len(l) != 0 {
		t.Fatalf("List after SIGKILL = %+v, %v, want nothing", l, err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed run's socket after List: %v, want removed", err)
	}
	s, err := listenIn(d, "web", newTestHandler())
	if err != nil {
		t.Fatalf("Listen of the dead run's name: %v", err)
	}
	s.Close()
}
