package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Fault: the process runs out of descriptors for real (a lowered
// RLIMIT_NOFILE, every descriptor left taken). A client that connects then
// waits in the listen backlog while accept fails with EMFILE and backs off;
// once descriptors are free again it is served.
func TestRelayAcceptOutOfDescriptors(t *testing.T) {
	server := listen(t)
	serve(t, server, echo)
	host := listen(t)
	log := new(lockedLog)
	r := &TCPRelay{Port: 80, Dialer: toAddr{addr: addrOf(server)}, Wait: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	// Serve's copy of the listener is made here, while descriptors are
	// left: the relay in the goroutine may start only after they are gone.
	lf, err := host.File()
	host.Close()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.ServeFile(ctx, lf) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("Serve did not return within 15s of the end of its context")
		}
	}()

	// The client's socket is made while descriptors are left.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 30})

	var limit unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &limit); err != nil {
		t.Fatal(err)
	}
	hog := exhaustDescriptors(t, limit)
	released := false
	release := func() {
		if !released {
			for _, h := range hog {
				unix.Close(h)
			}
			unix.Setrlimit(unix.RLIMIT_NOFILE, &limit)
			released = true
		}
	}
	defer release()

	to := addrOf(host).Addr().As4()
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(addrOf(host).Port()), Addr: to}); err != nil {
		t.Fatalf("connecting: %v", err)
	}
	waitFor(t, func() bool {
		s := log.String()
		return strings.Contains(s, "accept failed, retrying") && strings.Contains(s, "too many open files")
	})
	release()
	if _, err := unix.Write(fd, []byte("x")); err != nil {
		t.Fatal(err)
	}
	unix.Shutdown(fd, unix.SHUT_WR)
	var reply []byte
	buf := make([]byte, 16)
	for {
		n, err := unix.Read(fd, buf)
		if err != nil {
			t.Fatalf("reading the echo after %q: %v", reply, err)
		}
		if n == 0 {
			break
		}
		reply = append(reply, buf[:n]...)
	}
	if string(reply) != "x" {
		t.Fatalf("echo %q, want \"x\"", reply)
	}
}

// exhaustDescriptors lowers the soft RLIMIT_NOFILE to a little above the
// descriptors in use and takes every one left; it returns them.
func exhaustDescriptors(t *testing.T, limit unix.Rlimit) []int {
	t.Helper()
	highest := 0
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	for _, e := range entries {
		var n int
		if _, err := fmt.Sscan(e.Name(), &n); err == nil {
			highest = max(highest, n)
		}
	}
	low := limit
	low.Cur = uint64(highest + 32)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var hog []int
	for {
		h, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.EMFILE) {
			return hog
		}
		if err != nil {
			t.Fatal(err)
		}
		hog = append(hog, h)
	}
}
