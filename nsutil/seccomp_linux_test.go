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
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// TestMain lets the test binary be the child under the bind filter
// (bindChild), or the child that reports its id maps (idmapChild).
func TestMain(m *testing.M) {
	if spec := os.Getenv(idmapChildEnv); spec != "" {
		os.Exit(idmapChild(spec))
	}
	if port := os.Getenv("NSUTIL_TEST_BIND_CHILD"); port != "" {
		if spec, ok := strings.CutPrefix(port, "raw:"); ok {
			os.Exit(rawBindChild(spec))
		}
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

// The filter sends bind(2) of the native ABI to the listener, and
// getsockname(2) too when asked, and allows everything else. (bpf's VM reads
// words big-endian, the kernel reads seccomp_data native: the input is built
// for the VM.)
func TestBindFilter(t *testing.T) {
	arch, ok := bindArch()
	if !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	for _, getsockname := range []bool{false, true} {
		prog, err := bindFilter(getsockname)
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
		trapped := uint32(unix.SECCOMP_RET_ALLOW)
		if getsockname {
			trapped = unix.SECCOMP_RET_USER_NOTIF
		}
		tests := []struct {
			name string
			nr   uint32
			arch uint32
			want uint32
		}{
			{"bind", uint32(unix.SYS_BIND), arch, unix.SECCOMP_RET_USER_NOTIF},
			{"getsockname", uint32(unix.SYS_GETSOCKNAME), arch, trapped},
			{"connect", uint32(unix.SYS_CONNECT), arch, unix.SECCOMP_RET_ALLOW},
			{"listen", uint32(unix.SYS_LISTEN), arch, unix.SECCOMP_RET_ALLOW},
			{"x32 bind", 0x40000000 + uint32(unix.SYS_BIND), arch, unix.SECCOMP_RET_ALLOW},
			{"another ABI", uint32(unix.SYS_BIND), unix.AUDIT_ARCH_I386, unix.SECCOMP_RET_ALLOW},
			{"getsockname of another ABI", uint32(unix.SYS_GETSOCKNAME), unix.AUDIT_ARCH_I386, unix.SECCOMP_RET_ALLOW},
		}
		for _, tt := range tests {
			in := make([]byte, 64)
			binary.BigEndian.PutUint32(in[0:], tt.nr)
			binary.BigEndian.PutUint32(in[4:], tt.arch)
			got, err := vm.Run(in)
			if err != nil || uint32(got) != tt.want {
				t.Errorf("getsockname %v, %s: got %#x %v, want %#x", getsockname, tt.name, got, err, tt.want)
			}
		}
	}
}

// The structures seccomp_linux.go writes by hand have the sizes the
// kernel's ioctl numbers (as x/sys has them) encode.
func TestSeccompStructSizes(t *testing.T) {
	if _, ok := bindArch(); !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	// _IOC on the generic layout: the size is bits 16 to 29.
	size := func(req uintptr) uintptr { return req >> 16 & 0x3fff }
	for _, c := range []struct {
		name      string
		req, want uintptr
	}{
		{"RECV", unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Sizeof(seccompNotif{})},
		{"SEND", unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Sizeof(seccompNotifResp{})},
		{"ID_VALID", unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Sizeof(uint64(0))},
		{"ADDFD", unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Sizeof(seccompNotifAddfd{})},
	} {
		if got := size(c.req); got != c.want {
			t.Errorf("SECCOMP_IOCTL_NOTIF_%s (%#x) takes %d bytes; the Go structure has %d", c.name, c.req, got, c.want)
		}
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

	r := startBindChild(t, strconv.Itoa(port))
	l := r.l

	c := r.next()
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

	c = r.next()
	if binary.BigEndian.Uint16(c.Sockaddr[2:]) != 0 {
		t.Fatalf("second bind: %+v", c)
	}
	if err := l.Continue(c); err != nil {
		t.Fatal(err)
	}

	out := r.wait()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != fmt.Sprintf("bound 0 %d", port) || lines[1] == "bound 1 0" || !strings.HasPrefix(lines[1], "bound 1 ") {
		t.Fatalf("child says %q", lines)
	}
	// The child is gone: nothing can bind under the filter any more.
	r.closed()
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
	SendTrapConfig(mine, false)
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

// rawBindChild is bindChild with a bind(2) made by hand: spec is
// "PORT:ADDRLEN", ADDRLEN the whole 64-bit register. It prints what that
// bind of 127.0.0.1:PORT returned (rawBind), then binds 127.0.0.1:0 as
// usual, so the parent knows the first call is over.
func rawBindChild(spec string) int {
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Println("prctl:", err)
		return 1
	}
	sendBindListener(3)
	ps, ls, _ := strings.Cut(spec, ":")
	port, _ := strconv.ParseUint(ps, 10, 16)
	addrlen, _ := strconv.ParseUint(ls, 0, 64)
	fmt.Println("raw", rawBind(uint16(port), addrlen))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	}
	if err != nil {
		fmt.Println("bind 1:", err)
		return 1
	}
	return 0
}

// rawBind binds a new TCP socket to 127.0.0.1:port with bind's third
// argument addrlen as given (the address is followed by zeros up to 256
// bytes) and says what came of it: "bound PORT" or the error.
func rawBind(port uint16, addrlen uint64) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(fd)
	var sa [256]byte
	binary.NativeEndian.PutUint16(sa[0:], unix.AF_INET)
	binary.BigEndian.PutUint16(sa[2:], port)
	copy(sa[4:], []byte{127, 0, 0, 1})
	if _, _, errno := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(addrlen)); errno != 0 {
		return "error " + errno.Error()
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		return "getsockname: " + err.Error()
	}
	return fmt.Sprintf("bound %d", got.(*unix.SockaddrInet4).Port)
}

// A bind's address length is what the kernel makes of it: a bind it
// refuses for its length gets the kernel's own answer, not a host
// socket, and never reaches the caller of Next; the upper half of the
// register, which the kernel ignores, is ignored.
func TestBindListenerAddrlen(t *testing.T) {
	if _, ok := bindArch(); !ok {
		t.Skipf("no bind filter for %s", runtime.GOARCH)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()

	const garbage = 0xdead_beef << 32
	tests := []struct {
		name    string
		addrlen uint64
		// handed: the bind reaches Next, which the test answers with the
		// listener, as the helper answers a published port.
		handed bool
	}{
		{"longer than sockaddr_storage", maxSockaddr + 1, false},
		{"negative", 0xffff_ffff, false},
		{"shorter than sockaddr_in", unix.SizeofSockaddrInet4 - 1, false},
		{"one byte", 1, false},
		{"garbage above a long one", garbage | (maxSockaddr + 1), false},
		{"garbage above sockaddr_in", garbage | unix.SizeofSockaddrInet4, true},
		{"sockaddr_storage", maxSockaddr, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the kernel says without the filter: the length is
			// checked before the address (whose port is in use), and
			// only the low 32 bits count.
			want := rawBind(port, tt.addrlen)
			if tt.handed {
				if want != "error "+unix.EADDRINUSE.Error() {
					t.Fatalf("without the filter: %s, want EADDRINUSE", want)
				}
				want = fmt.Sprintf("bound %d", port)
			}
			r := startBindChild(t, fmt.Sprintf("raw:%d:%#x", port, tt.addrlen))
			l := r.l
			c := r.next()
			if tt.handed {
				if c.ReadErr != nil || len(c.Sockaddr) != int(uint32(tt.addrlen)) || binary.BigEndian.Uint16(c.Sockaddr[2:]) != port {
					t.Fatalf("the bind: %d bytes %v, %v; want %d bytes of 127.0.0.1:%d", len(c.Sockaddr), c.Sockaddr[:min(len(c.Sockaddr), 16)], c.ReadErr, uint32(tt.addrlen), port)
				}
				if err := l.Replace(c, int(lf.Fd()), true); err != nil {
					t.Fatal(err)
				}
				c = r.next()
			}
			// The marker bind to port 0 (a wrong call here is still
			// answered, so the child ends).
			if len(c.Sockaddr) != unix.SizeofSockaddrInet4 || binary.BigEndian.Uint16(c.Sockaddr[2:]) != 0 {
				l.Continue(c)
				t.Fatalf("Next gave a bind of %d bytes %v; the kernel refuses it", len(c.Sockaddr), c.Sockaddr[:min(len(c.Sockaddr), 16)])
			}
			if err := l.Continue(c); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := strings.Cut(r.wait(), "\n"); got != "raw "+want {
				t.Fatalf("under the filter: %q, want %q", got, "raw "+want)
			}
		})
	}
}

// bindChildRun is a child of the test under the bind filter
// (startBindChild) and the listener of its filter, with a goroutine that
// calls Next.
type bindChildRun struct {
	t     *testing.T
	l     *BindListener
	calls chan *BindCall
	err   chan error // Next's error, once calls is closed
	done  chan struct{}
	mu    sync.Mutex
	out   strings.Builder
	werr  error // the child's exit, once done is closed
}

// startBindChild starts this binary as a child under the bind filter with
// NSUTIL_TEST_BIND_CHILD=mode. The child is killed at the end of the test.
func startBindChild(t *testing.T, mode string) *bindChildRun {
	t.Helper()
	r := &bindChildRun{t: t, calls: make(chan *BindCall), err: make(chan error, 1), done: make(chan struct{})}
	mine, theirs, err := BindNotifyPair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mine.Close() })
	SendTrapConfig(mine, false)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// A race-enabled child would wait a second at exit for nothing.
	cmd.Env = append(os.Environ(), "NSUTIL_TEST_BIND_CHILD="+mode, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.ExtraFiles = []*os.File{theirs}
	cmd.Stdout, cmd.Stderr = r, r
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	theirs.Close()
	go func() {
		r.werr = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
	})
	r.l, err = ReceiveBindListener(mine)
	if err != nil {
		t.Fatalf("%v\nchild: %s", err, r.output())
	}
	t.Cleanup(r.l.Close)
	go func() {
		defer close(r.calls)
		for {
			c, err := r.l.Next()
			if err != nil {
				r.err <- err
				return
			}
			r.calls <- c
		}
	}()
	return r
}

// Write collects the child's output.
func (r *bindChildRun) Write(b []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Write(b)
}

func (r *bindChildRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// next waits for the child's next bind.
func (r *bindChildRun) next() *BindCall {
	r.t.Helper()
	select {
	case c := <-r.calls:
		if c == nil {
			r.t.Fatalf("Next: %v\nchild: %s", <-r.err, r.output())
		}
		return c
	case <-time.After(10 * time.Second):
		r.t.Fatalf("no bind within 10s; child: %s", r.output())
	}
	return nil
}

// wait waits for the child to exit successfully and returns its output.
func (r *bindChildRun) wait() string {
	r.t.Helper()
	select {
	case <-r.done:
		if r.werr != nil {
			r.t.Fatalf("child: %v\n%s", r.werr, r.output())
		}
	case <-time.After(10 * time.Second):
		r.t.Fatalf("the child did not exit; output: %s", r.output())
	}
	return r.output()
}

// closed waits for Next to return once the child is gone, and fails
// unless it returned ErrBindListenerClosed.
func (r *bindChildRun) closed() {
	r.t.Helper()
	select {
	case c := <-r.calls:
		if c != nil {
			r.t.Fatalf("unexpected bind %+v", c)
		}
		if err := <-r.err; !errors.Is(err, ErrBindListenerClosed) {
			r.t.Fatalf("Next: %v, want ErrBindListenerClosed", err)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal("Next did not return after the child exited")
	}
}
