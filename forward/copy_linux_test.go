package forward

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// subprocessEnv names the test a re-executed test binary runs as a child.
const subprocessEnv = "FORWARD_TEST_SUBPROCESS"

// inSubprocess runs the test named t in a fresh copy of the test binary and
// reports whether the caller is that copy (then it runs the test's body).
// A test that takes every descriptor of its process does so in the copy,
// so the other tests' goroutines never see EMFILE.
func inSubprocess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(subprocessEnv) == t.Name() {
		return true
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), subprocessEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test in a subprocess failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the subprocess did not pass the test:\n%s", out)
	}
	return false
}

// Fault: a relayed connection whose data arrives while the process has no
// descriptor left for a splice pipe goes on through a buffer in user
// space, both ways, and every byte arrives.
func TestRelayCopiesWithoutPipes(t *testing.T) {
	if !inSubprocess(t) {
		return
	}
	server := listen(t)
	serve(t, server, echo)
	relayAddr, _, _ := startRelay(t, toAddr{addr: addrOf(server)}, time.Second)
	c := dial(t, relayAddr)

	// Both directions of the relayed connection wait for data, their pipes
	// back in the pool; close those, then take every descriptor left.
	waitFor(t, func() bool { return waitingCopies() == 2 })
	pipes.mu.Lock()
	for _, p := range pipes.free {
		closePipe(p)
	}
	pipes.free = nil
	pipes.mu.Unlock()
	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	hog := exhaustDescriptors(t, limit)
	defer func() {
		for _, h := range hog {
			unix.Close(h)
		}
		unix.Setrlimit(unix.RLIMIT_NOFILE, &limit)
	}()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); !errors.Is(err, unix.EMFILE) {
		if err == nil {
			closePipe(p)
		}
		t.Fatalf("pipe2 with every descriptor taken: %v, want EMFILE", err)
	}

	data := make([]byte, 8<<20)
	rand.Read(data)
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
		t.Fatalf("after %d bytes of the echo: %v", n, err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if n != int64(len(data)) || [32]byte(h.Sum(nil)) != sha256.Sum256(data) {
		t.Fatalf("echo of %d bytes differs from the %d sent", n, len(data))
	}
}

// waitingCopies counts the goroutines that wait for data in copyStream
// (and so hold no pipe).
func waitingCopies() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "forward.copyStream(") && strings.Contains(g, "runtime_pollWait(") {
			n++
		}
	}
	return n
}
