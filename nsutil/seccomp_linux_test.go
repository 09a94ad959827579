package nsutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestMain lets the test binary be the child under the bind filter
// (bindChild).
func TestMain(m *testing.M) {
	if port := os.Getenv("NSUTIL_TEST_BIND_CHILD"); port != "" {
		os.Exit(bindChild(port))
	}
	os.Exit(m.Run())
}

// bindChild installs the bind filter as the exec step does (no_new_privs,
// then the filter on this locked thread, listener sent on fd 3), then, on
// the same thread, binds a socket to 127.0.0.1:port and another to
// 127.0.0.1:0, and prints what getsockname says of each. With "wait" it
// sleeps instead, until it is killed.
func bindChild(port string) int {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("prctl:", err)
		return 1
	}
	sendBindListener(3)
	if port == "wait" {
		time.Sleep(time.Hour)
	}
	p, _ := strconv.Atoi(port)
	for i, p := range []int{p, 0} {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			err = unix.Bind(fd, &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}})
		}
		if err != nil {
			fmt.Printf("bind %d: %v\n", i, err)
			return 1
		}
		sa, _ := unix.Getsockname(fd)
		a := sa.(*unix.SockaddrInet4)
		fmt.Printf("bound %d %d\n", i, a.Port)
	}
	return 0
}

// The filter sends bind(2) of the native ABI to the listener and allows
// everything else. (bpf's VM reads words big-endian, the kernel reads
// seccomp_data native: the input is built for the VM.)
func TestBindFilter(t *testing.T) {
	arch, ok := bindArch()
	if !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	prog, err := bindFilter()
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]bpf.RawInstruction, len(prog))
	for i, p := range prog {
		raw[i] = bpf.RawInstruction{Op: p.Code, Jt: p.Jt, Jf: p.Jf, K: p.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("cannot disassemble the filter")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		nr   uint32
		arch uint32
		want uint32
	}{
		{"bind", uint32(unix.SYS_BIND), arch, unix.SECCOMP_RET_USER_NOTIF},
		{"connect", uint32(unix.SYS_CONNECT), arch, unix.SECCOMP_RET_ALLOW},
		{"listen", uint32(unix.SYS_LISTEN), arch, unix.SECCOMP_RET_ALLOW},
		{"x32 bind", 0x40000000 + uint32(unix.SYS_BIND), arch, unix.SECCOMP_RET_ALLOW},
		{"another ABI", uint32(unix.SYS_BIND), unix.AUDIT_ARCH_I386, unix.SECCOMP_RET_ALLOW},
	}
	for _, tt := range tests {
		in := make([]byte, 64)
		binary.BigEndian.PutUint32(in[0:], tt.nr)
		binary.BigEndian.PutUint32(in[4:], tt.arch)
		got, err := vm.Run(in)
		if err != nil || uint32(got) != tt.want {
			t.Errorf("%s: got %#x %v, want %#x", tt.name, got, err, tt.want)
		}
	}
}

// The ioctl numbers this file makes match the kernel's (and x/sys's).
func TestIoctlNumbers(t *testing.T) {
	if _, ok := bindArch(); !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	if ioctlNotifIDValid != 0x40082102 || ioctlNotifAddfd != 0x40182103 {
		t.Fatalf("ID_VALID %#x, ADDFD %#x", ioctlNotifIDValid, ioctlNotifAddfd)
	}
	if recv := iow(0, 0x50) | 1<<31; recv != unix.SECCOMP_IOCTL_NOTIF_RECV {
		t.Fatalf("RECV %#x, x/sys says %#x", recv, unix.SECCOMP_IOCTL_NOTIF_RECV)
	}
}

// A real process under the filter: its bind of a published port gets the
// prepared socket (already bound: getsockname shows its port), its bind of
// port 0 runs in the kernel, and Next ends when the process is gone.
func TestBindListener(t *testing.T) {
	if _, ok := bindArch(); !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	// The socket to hand over; the child asks for its very port, which
	// the kernel would refuse as in use.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	mine, theirs, err := BindNotifyPair()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NSUTIL_TEST_BIND_CHILD="+strconv.Itoa(port))
	cmd.ExtraFiles = []*os.File{theirs}
	out := new(strings.Builder)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	l, err := ReceiveBindListener(mine)
	if err != nil {
		t.Fatalf("%v\nchild: %s", err, out)
	}

	next := make(chan *BindCall)
	nextErr := make(chan error, 1)
	go func() {
		defer close(next)
		for {
			c, err := l.Next()
			if err != nil {
				nextErr <- err
				return
			}
			next <- c
		}
	}()
	recv := func() *BindCall {
		t.Helper()
		select {
		case c := <-next:
			if c == nil {
				t.Fatalf("Next: %v\nchild: %s", <-nextErr, out)
			}
			return c
		case <-time.After(10 * time.Second):
			t.Fatalf("no bind within 10s; child: %s", out)
		}
		return nil
	}

	c := recv()
	if c.ReadErr != nil || len(c.Sockaddr) != unix.SizeofSockaddrInet4 || int(binary.BigEndian.Uint16(c.Sockaddr[2:])) != port {
		t.Fatalf("first bind: %+v", c)
	}
	sfd, err := l.ServerSocket(c)
	if err != nil {
		t.Fatal(err)
	}
	if typ, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
		t.Errorf("the server's socket: type %d, %v", typ, err)
	}
	unix.Close(sfd)
	if cloexec, ok := CloseOnExec(c); !ok || !cloexec {
		t.Errorf("CloseOnExec = %v, %v; the child asked for SOCK_CLOEXEC", cloexec, ok)
	}
	if err := l.Replace(c, int(lf.Fd()), true); err != nil {
		t.Fatal(err)
	}

	c = recv()
	if binary.BigEndian.Uint16(c.Sockaddr[2:]) != 0 {
		t.Fatalf("second bind: %+v", c)
	}
	if err := l.Continue(c); err != nil {
		t.Fatal(err)
	}

	select {
	case <-done:
		if waitErr != nil {
			t.Fatalf("child: %v\n%s", waitErr, out)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the child did not exit; output: %s", out)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || lines[0] != fmt.Sprintf("bound 0 %d", port) || lines[1] == "bound 1 0" || !strings.HasPrefix(lines[1], "bound 1 ") {
		t.Fatalf("child says %q", lines)
	}
	// The child is gone: nothing can bind under the filter any more.
	select {
	case c := <-next:
		if c != nil {
			t.Fatalf("unexpected bind %+v", c)
		}
		if err := <-nextErr; !errors.Is(err, ErrBindListenerClosed) {
			t.Fatalf("Next: %v, want ErrBindListenerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after the child exited")
	}
}

// Close ends a Next that waits.
func TestBindListenerClose(t *testing.T) {
	if _, ok := bindArch(); !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	mine, theirs, err := BindNotifyPair()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	// A child that installs the filter and then waits to be killed.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "NSUTIL_TEST_BIND_CHILD=wait")
	cmd.ExtraFiles = []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	l, err := ReceiveBindListener(mine)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := l.Next()
		errs <- err
	}()
	l.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, ErrBindListenerClosed) {
			t.Fatalf("Next: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return after Close")
	}
}

// Without a filter to send (seccomp refused), the helper gets the reason.
func TestReceiveBindListenerEOF(t *testing.T) {
	mine, theirs, err := BindNotifyPair()
	if err != nil {
		t.Fatal(err)
	}
	defer mine.Close()
	unix.Sendmsg(int(theirs.Fd()), []byte("installing the seccomp filter: function not implemented"), nil, nil, 0)
	theirs.Close()
	if _, err := ReceiveBindListener(mine); err == nil || !strings.Contains(err.Error(), "function not implemented") {
		t.Fatalf("got %v", err)
	}
}
