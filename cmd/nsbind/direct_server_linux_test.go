package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// directTestServer runs the small servers of the --direct tests (see
// testServer); ok is false for a kind it does not know.
//
//	whoami NET PORT        listens on NET (tcp, tcp4, tcp6) :PORT, prints
//	                       "listening on ADDR", answers "peer=ADDR"
//	admin PORT ADMIN       listens on 0.0.0.0:PORT and 127.0.0.1:ADMIN;
//	                       each connection on PORT asks the admin port
//	                       inside, answers "peer=ADDR admin=REPLY"
//	sockopts PORT FLAGS    a raw socket (FLAGS "plain" or "nonblock-cloexec")
//	                       with SO_REUSEADDR, SO_KEEPALIVE and SO_RCVBUF set,
//	                       bound to 0.0.0.0:PORT; prints what it sees of the
//	                       socket after bind as JSON, answers "peer=ADDR"
//	reuseport PORT N       N listeners on 0.0.0.0:PORT with SO_REUSEPORT,
//	                       prints each address, answers "worker=I peer=ADDR"
//	udpwhoami4 PORT        UDP on 0.0.0.0:PORT, answers "peer=ADDR"
//	shape N PORT           listens on PORT as server socket shape N does
//	                       (1 dual-stack [::], 2 0.0.0.0 and [::] IPv6-only,
//	                       3 0.0.0.0, 4 127.0.0.1, 5 ::1), prints
//	                       "listening", answers "peer=ADDR"; after
//	                       "view": then dials its own port on 127.0.0.1
//	                       and ::1 from inside and prints what each got
func directTestServer(args []string) (code int, ok bool) {
	if len(args) < 2 {
		return 0, false
	}
	fail := func(err error) (int, bool) {
		fmt.Fprintln(os.Stderr, err)
		return 1, true
	}
	switch args[0] {
	case "whoami":
		ln, err := net.Listen(args[1], ":"+args[2])
		if err != nil {
			return fail(err)
		}
		fmt.Printf("listening on %s\n", ln.Addr())
		serveLines(ln, func(c net.Conn) string { return "peer=" + c.RemoteAddr().String() })
	case "admin":
		ln, err := net.Listen("tcp4", ":"+args[1])
		if err != nil {
			return fail(err)
		}
		admin, err := net.Listen("tcp4", "127.0.0.1:"+args[2])
		if err != nil {
			return fail(err)
		}
		fmt.Printf("listening on %s and %s\n", ln.Addr(), admin.Addr())
		go serveLines(admin, func(net.Conn) string { return "ok" })
		serveLines(ln, func(c net.Conn) string {
			reply := "unreachable"
			if a, err := net.Dial("tcp4", "127.0.0.1:"+args[2]); err == nil {
				if line, err := bufio.NewReader(a).ReadString('\n'); err == nil {
					reply = line[:len(line)-1]
				}
				a.Close()
			}
			return fmt.Sprintf("peer=%s admin=%s", c.RemoteAddr(), reply)
		})
	case "sockopts":
		return sockoptsServer(args[1], args[2]), true
	case "reuseport":
		n, _ := strconv.Atoi(args[2])
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			return serr
		}}
		for i := range n {
			ln, err := lc.Listen(context.Background(), "tcp4", ":"+args[1])
			if err != nil {
				return fail(err)
			}
			fmt.Printf("worker %d listening on %s\n", i, ln.Addr())
			go serveLines(ln, func(c net.Conn) string { return fmt.Sprintf("worker=%d peer=%s", i, c.RemoteAddr()) })
		}
		select {}
	case "shape":
		return shapeServer(args[1], args[2], len(args) > 3 && args[3] == "view"), true
	case "udpwhoami4":
		pc, err := net.ListenPacket("udp4", ":"+args[1])
		if err != nil {
			return fail(err)
		}
		fmt.Printf("listening on %s\n", pc.LocalAddr())
		buf := make([]byte, 2048)
		for {
			_, peer, err := pc.ReadFrom(buf)
			if err != nil {
				return fail(err)
			}
			pc.WriteTo([]byte("peer="+peer.String()), peer)
		}
	default:
		return 0, false
	}
	return 1, true
}

// serveLines answers each connection on ln with one line and closes it.
func serveLines(ln net.Listener, answer func(net.Conn) string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintln(c, answer(c))
		}()
	}
}

// sockoptsReport is what the sockopts server sees of its socket after bind.
type sockoptsReport struct {
	Sockname  string `json:"sockname"`
	CloExec   bool   `json:"cloexec"`
	NonBlock  bool   `json:"nonblock"`
	RcvBuf    int    `json:"rcvbuf"`
	KeepAlive int    `json:"keepalive"`
	ReuseAddr int    `json:"reuseaddr"`
}

// sockoptsServer makes its socket with raw system calls, as a C server
// does, so the test sees the flags and options it chose.
func sockoptsServer(port, flavor string) int {
	typ := unix.SOCK_STREAM
	if flavor == "nonblock-cloexec" {
		typ |= unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
	}
	fd, err := unix.Socket(unix.AF_INET, typ, 0)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	}
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 32768)
	}
	p, _ := strconv.Atoi(port)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: p})
	}
	if err == nil {
		err = unix.Listen(fd, 64)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var r sockoptsReport
	if sa, err := unix.Getsockname(fd); err == nil {
		if a, ok := sa.(*unix.SockaddrInet4); ok {
			r.Sockname = fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port)
		}
	}
	fdFlags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	flFlags, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	r.CloExec = fdFlags&unix.FD_CLOEXEC != 0
	r.NonBlock = flFlags&unix.O_NONBLOCK != 0
	r.RcvBuf, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	r.KeepAlive, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	r.ReuseAddr, _ = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR)
	b, _ := json.Marshal(r)
	fmt.Printf("sockopts %s\n", b)
	for {
		if r.NonBlock {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(pfd, -1)
		}
		c, sa, err := unix.Accept(fd)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		peer := "?"
		if a, ok := sa.(*unix.SockaddrInet4); ok {
			peer = fmt.Sprintf("%d.%d.%d.%d:%d", a.Addr[0], a.Addr[1], a.Addr[2], a.Addr[3], a.Port)
		}
		unix.Write(c, []byte("peer="+peer+"\n"))
		unix.Close(c)
	}
}

// denySeccompForTest makes this process and everything it starts fail
// seccomp(2) with ENOSYS, as a container's seccomp profile may, when
// NSBIND_TEST_DENY_SECCOMP=1: the test of --direct where it is not
// available. It needs no privilege (no_new_privs), and TSYNC puts the
// filter on every thread of the Go runtime.
func denySeccompForTest() {
	if os.Getenv("NSBIND_TEST_DENY_SECCOMP") != "1" {
		return
	}
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		panic("no seccomp test filter for " + runtime.GOARCH)
	}
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arch, SkipTrue: 3},
		bpf.LoadAbsolute{Off: 0, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(unix.SYS_SECCOMP), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	})
	if err != nil {
		panic(err)
	}
	prog := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		prog[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		panic(err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		panic(errno)
	}
}

// shapeServer is the "shape" test server.
func shapeServer(shape, port string, view bool) int {
	var addrs [][2]string
	switch shape {
	case "1":
		addrs = [][2]string{{"tcp", ":" + port}}
	case "2":
		addrs = [][2]string{{"tcp4", "0.0.0.0:" + port}, {"tcp6", "[::]:" + port}}
	case "3":
		addrs = [][2]string{{"tcp4", "0.0.0.0:" + port}}
	case "4":
		addrs = [][2]string{{"tcp4", "127.0.0.1:" + port}}
	case "5":
		addrs = [][2]string{{"tcp6", "[::1]:" + port}}
	default:
		fmt.Fprintln(os.Stderr, "unknown shape", shape)
		return 2
	}
	for _, a := range addrs {
		ln, err := net.Listen(a[0], a[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go serveLines(ln, func(c net.Conn) string { return "peer=" + c.RemoteAddr().String() })
	}
	fmt.Println("listening")
	if view {
		for _, a := range []string{"127.0.0.1:" + port, "[::1]:" + port} {
			got := "refused"
			if c, err := net.DialTimeout("tcp", a, 10*time.Second); err == nil {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if line, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					got = line[:len(line)-1]
				} else {
					got = "no answer"
				}
				c.Close()
			}
			fmt.Printf("view %s: %s\n", a, got)
		}
	}
	select {}
}
