package nsutil

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// --direct: the exec step traps the server's bind(2) calls with a seccomp
// filter whose notifications go to the helper (fact 6 of DESIGN.md). The
// helper may then put a host socket into the server's descriptor slot
// (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SETFD) and answer the
// bind with success, or let the bind run as usual inside
// (SECCOMP_USER_NOTIF_FLAG_CONTINUE). None of it needs a privilege: a
// filter may be installed by any thread with no_new_privs set (or with
// CAP_SYS_ADMIN in its user namespace, as with --root), and the helper
// runs as the same user as the server.
//
// Kernel versions: listener 5.0, CONTINUE 5.5, pidfd_getfd 5.6, ADDFD 5.9,
// WAIT_KILLABLE_RECV 6.0 (used when present). Where a step is missing the
// helper falls back to the relay.

// BindNotifyFD is the descriptor on which the exec step sends the listener
// of its bind filter to the helper (with --direct): a SOCK_SEQPACKET socket
// that follows ExecReportFD.
const BindNotifyFD = ExecReportFD + 1

// The kernel's structures of linux/seccomp.h, which golang.org/x/sys does
// not define (it has the ioctl numbers, SECCOMP_IOCTL_NOTIF_*, whose size
// fields TestSeccompStructSizes checks these against).
type seccompData struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  seccompData
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

type seccompNotifAddfd struct {
	ID         uint64
	Flags      uint32
	Srcfd      uint32
	Newfd      uint32
	NewfdFlags uint32
}

// bindArch is the audit architecture of the running binary and whether the
// bind filter supports it: the filter checks it, because a syscall number
// means another call under another ABI (a 32-bit program on x86_64).
func bindArch() (uint32, bool) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, true
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, true
	case "riscv64":
		return unix.AUDIT_ARCH_RISCV64, true
	}
	return 0, false
}

// bindFilter is the classic BPF program of the exec step: bind(2) of the
// native ABI goes to the listener, and getsockname(2) too with
// getsockname; every other call is allowed. x32 calls on x86_64 carry the
// same architecture but numbers above 0x40000000, so they are allowed too
// (and bind inside as usual).
func bindFilter(getsockname bool) ([]unix.SockFilter, error) {
	arch, ok := bindArch()
	if !ok {
		return nil, fmt.Errorf("no bind filter for %s", runtime.GOARCH)
	}
	const (
		offNr   = uint32(unsafe.Offsetof(seccompData{}.Nr))
		offArch = uint32(unsafe.Offsetof(seccompData{}.Arch))
	)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arch, SkipTrue: 3},
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(unix.SYS_BIND), SkipTrue: 1},
		bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
	}
	if getsockname {
		prog = []bpf.Instruction{
			bpf.LoadAbsolute{Off: offArch, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arch, SkipTrue: 4},
			bpf.LoadAbsolute{Off: offNr, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(unix.SYS_BIND), SkipTrue: 1},
			bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(unix.SYS_GETSOCKNAME), SkipTrue: 1},
			bpf.RetConstant{Val: unix.SECCOMP_RET_USER_NOTIF},
			bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		}
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("assembling the bind filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// installBindFilter installs the bind filter on the calling thread and
// returns its listener (close-on-exec). A filter belongs to the thread that
// installs it and is inherited by execve and by every child, so installing
// it on the locked thread that then execs is enough: the process's other
// threads end at execve (no SECCOMP_FILTER_FLAG_TSYNC needed).
func installBindFilter(getsockname bool) (int, error) {
	prog, err := bindFilter(getsockname)
	if err != nil {
		return -1, err
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	install := func(flags uintptr) (int, error) {
		fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, flags, uintptr(unsafe.Pointer(&fprog)))
		runtime.KeepAlive(prog)
		if errno != 0 {
			return -1, errno
		}
		return int(fd), nil
	}
	// WAIT_KILLABLE_RECV keeps a signal (Go's preemption signal, for one)
	// from interrupting a bind the helper is already answering; kernels
	// before 6.0 refuse the flag.
	fd, err := install(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
	if errors.Is(err, unix.EINVAL) {
		fd, err = install(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
	}
	if errors.Is(err, unix.EACCES) {
		// Without no_new_privs a filter needs CAP_SYS_ADMIN; the exec step
		// sets no_new_privs when it drops the capabilities, so this is a
		// --root run that has none in this user namespace.
		if perr := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); perr == nil {
			fd, err = install(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
		}
	}
	if err != nil {
		return -1, fmt.Errorf("installing the seccomp filter: %w", err)
	}
	return fd, nil
}

// trapWait bounds how long the exec step waits for the helper's word on
// what to trap (SendTrapConfig), which the helper sends before it starts
// the exec step.
const trapWait = 5 * time.Second

// sendBindListener is the exec step's part of --direct, on the thread that
// execs: it reads what to trap from sock (SendTrapConfig), installs the
// bind filter and sends its listener on sock, or, when it cannot, the
// reason as text, so the helper relays instead. Both descriptors are
// close-on-exec: the server gets neither.
func sendBindListener(sock int) {
	defer unix.Close(sock)
	getsockname := false
	pfd := []unix.PollFd{{Fd: int32(sock), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, int(trapWait/time.Millisecond)); err == nil && n == 1 {
		var b [1]byte
		if n, _, err := unix.Recvfrom(sock, b[:], 0); err == nil && n == 1 {
			getsockname = b[0]&trapGetsockname != 0
		}
	}
	fd, err := installBindFilter(getsockname)
	if err != nil {
		unix.Sendmsg(sock, []byte(err.Error()), nil, nil, 0)
		return
	}
	defer unix.Close(fd)
	unix.Sendmsg(sock, []byte{0}, unix.UnixRights(fd), nil, 0)
}

// trapGetsockname is the flag of SendTrapConfig's byte that asks for
// getsockname(2) to be trapped too.
const trapGetsockname = 1

// SendTrapConfig tells the exec step, on the helper's end of the bind
// notification pair, whether its filter traps getsockname(2) as well as
// bind(2): for a truthful getsockname of the host sockets the server gets
// (AnswerGetsockname). Send it before the exec step starts.
func SendTrapConfig(mine *os.File, getsockname bool) error {
	var b byte
	if getsockname {
		b |= trapGetsockname
	}
	_, err := mine.Write([]byte{b})
	return err
}

// BindListener receives the server's bind(2) calls (the listener of the
// exec step's seccomp filter) and answers them. Next may be called from one
// goroutine at a time; the answers from any.
type BindListener struct {
	fd     int
	arch   uint32
	cancel [2]int // a pipe: writing to it ends a waiting Next

	mu   sync.Mutex // guards done, so Close never writes to a closed pipe
	done bool
}

// ErrBindListenerClosed is returned by Next once the listener was closed or
// no process is left that could call bind.
var ErrBindListenerClosed = errors.New("bind listener closed")

// ReceiveBindListener reads what the exec step sent on sock (the helper's
// end of the socket pair whose other end was BindNotifyFD): the listener,
// or an error that says why there is none. Call it once the server runs
// (StartServer returned): the message was sent before the exec.
func ReceiveBindListener(sock *os.File) (*BindListener, error) {
	buf := make([]byte, 512)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("receiving the seccomp listener: %w", err)
	}
	var fds []int
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, cm := range cmsgs {
				if got, err := unix.ParseUnixRights(&cm); err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		if n == 0 {
			return nil, errors.New("the exec step sent no seccomp listener")
		}
		return nil, errors.New(string(buf[:n]))
	}
	arch, _ := bindArch()
	l := &BindListener{fd: fds[0], arch: arch}
	if err := unix.Pipe2(l.cancel[:], unix.O_CLOEXEC); err != nil {
		unix.Close(l.fd)
		return nil, fmt.Errorf("receiving the seccomp listener: %w", err)
	}
	return l, nil
}

// Close makes a waiting Next return ErrBindListenerClosed. The listener
// itself closes when Next returns, and with it the filter's notifications:
// a bind the server calls after that fails with ENOSYS.
func (l *BindListener) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		unix.Write(l.cancel[1], []byte{0})
	}
}

// BindCall is one bind(2) of the server, stopped until it is answered.
type BindCall struct {
	id uint64
	// Pid is the calling thread's id, in the helper's PID namespace.
	Pid int
	// FD is the server's socket descriptor (bind's first argument).
	FD int
	// Sockaddr is the address the server asked for, as it is in memory
	// (nil when it could not be read; ReadErr then says why).
	Sockaddr []byte
	ReadErr  error
	// Getsockname: the call is getsockname(2), not bind (with
	// SendTrapConfig); it has no Sockaddr.
	Getsockname bool
	// addr and addrlen are getsockname's pointers into the server.
	addr, addrlen uint64
}

// maxSockaddr is sizeof(struct sockaddr_storage): the kernel reads no more.
const maxSockaddr = 128

// Next waits for the next bind(2) and reads the address it asks for from
// the server's memory. The read is checked against the notification id
// afterwards (SECCOMP_IOCTL_NOTIF_ID_VALID): had the call ended and its
// thread been reused, the bytes would belong to someone else. A bind whose
// address length the kernel refuses (over a sockaddr_storage, or short of
// its family's) Next lets run on to the kernel's own EINVAL itself: it is
// never given a socket. It returns
// ErrBindListenerClosed after Close, or when every process that could
// call bind is gone.
func (l *BindListener) Next() (*BindCall, error) {
	for {
		fds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}, {Fd: int32(l.cancel[0]), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return nil, l.closed(fmt.Errorf("waiting for a bind: %w", err))
		}
		if fds[1].Revents != 0 {
			return nil, l.closed(ErrBindListenerClosed)
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			// POLLHUP: the last process under the filter has exited.
			return nil, l.closed(ErrBindListenerClosed)
		}
		var n seccompNotif // the kernel wants it zeroed
		if err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ENOENT) {
				continue // the caller went away in between
			}
			return nil, l.closed(fmt.Errorf("receiving a bind: %w", err))
		}
		c := &BindCall{id: n.ID, Pid: int(n.Pid), FD: int(int32(n.Data.Args[0]))}
		if n.Data.Nr == int32(unix.SYS_GETSOCKNAME) && n.Data.Arch == l.arch {
			c.Getsockname, c.addr, c.addrlen = true, n.Data.Args[1], n.Data.Args[2]
			return c, nil
		}
		if n.Data.Nr != int32(unix.SYS_BIND) || n.Data.Arch != l.arch {
			l.Continue(c) // not ours to judge
			continue
		}
		// addrlen is a socklen_t: the kernel reads the low 32 bits of the
		// register, and the upper ones may hold anything.
		addr, size := n.Data.Args[1], uint32(n.Data.Args[2])
		if !addrlenFits(size) {
			l.Continue(c) // the kernel refuses it (EINVAL) by itself
			continue
		}
		switch buf, err := l.read(c.Pid, addr, int(size)); {
		case err != nil:
			c.ReadErr = err
		case !sockaddrFits(buf):
			l.Continue(c)
			continue
		default:
			c.Sockaddr = buf
		}
		if !l.valid(c) {
			continue // the call is gone; the bytes may not be its own
		}
		return c, nil
	}
}

// addrlenFits reports whether a bind with address length size can succeed:
// the kernel refuses more than a sockaddr_storage (EINVAL, before it
// reads the address), and any address starts with its family.
func addrlenFits(size uint32) bool {
	return size >= 2 && size <= maxSockaddr
}

// sockaddrFits reports whether b is long enough for its family as the
// kernel's inet_bind and inet6_bind check it (shorter ones get EINVAL).
// Other families are left to the caller.
func sockaddrFits(b []byte) bool {
	switch binary.NativeEndian.Uint16(b) {
	case unix.AF_INET:
		return len(b) >= unix.SizeofSockaddrInet4
	case unix.AF_INET6:
		return len(b) >= sin6LenRFC2133
	}
	return true
}

// sin6LenRFC2133 is the kernel's SIN6_LEN_RFC2133: a sockaddr_in6 without
// its scope id, the shortest inet6_bind accepts.
const sin6LenRFC2133 = 24

// read reads size bytes at addr from the memory of thread pid.
func (l *BindListener) read(pid int, addr uint64, size int) ([]byte, error) {
	if size == 0 {
		return nil, errors.New("no address")
	}
	buf := make([]byte, size)
	local := unix.Iovec{Base: &buf[0]}
	local.SetLen(size)
	got, err := unix.ProcessVMReadv(pid, []unix.Iovec{local}, []unix.RemoteIovec{{Base: uintptr(addr), Len: size}}, 0)
	if err != nil {
		return nil, fmt.Errorf("reading the address from the server's memory: %w", err)
	}
	if got != size {
		return nil, fmt.Errorf("reading the address from the server's memory: %d of %d bytes", got, size)
	}
	return buf, nil
}

func (l *BindListener) closed(err error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done = true
	unix.Close(l.fd)
	unix.Close(l.cancel[0])
	unix.Close(l.cancel[1])
	return err
}

func (l *BindListener) ioctl(req uintptr, arg unsafe.Pointer) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(l.fd), req, uintptr(arg))
	if errno != 0 {
		return errno
	}
	return nil
}

// valid reports whether c still waits for its answer.
func (l *BindListener) valid(c *BindCall) bool {
	id := c.id
	return l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&id)) == nil
}

func (l *BindListener) respond(c *BindCall, val int64, errno unix.Errno, flags uint32) error {
	r := seccompNotifResp{ID: c.id, Val: val, Error: -int32(errno), Flags: flags}
	if err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&r)); err != nil {
		return fmt.Errorf("answering the server's bind: %w", err)
	}
	return nil
}

// Continue lets the bind run in the kernel as if it had not been trapped.
// (The kernel's own caveat does not apply: the helper never decides on
// anything the server could change after the check, since bind itself,
// not the helper, then acts on the server's memory.)
func (l *BindListener) Continue(c *BindCall) error {
	return l.respond(c, 0, 0, unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
}

// Fail answers the bind with errno.
func (l *BindListener) Fail(c *BindCall, errno unix.Errno) error {
	return l.respond(c, 0, errno, 0)
}

// Succeed answers the bind with success without running it (the socket in
// its slot is already bound).
func (l *BindListener) Succeed(c *BindCall) error {
	return l.respond(c, 0, 0, 0)
}

// Replace puts sock into the server's descriptor slot c.FD in place of the
// socket it asked to bind (which the server's descriptor table then drops)
// and answers the bind with success. The server's descriptor refers to the
// same open file as sock, so the two share file status flags such as
// O_NONBLOCK; cloexec sets the server's close-on-exec flag. When the
// descriptor was installed but the answer failed, the bind is restarted
// by the kernel and arrives again, on sock.
func (l *BindListener) Replace(c *BindCall, sock int, cloexec bool) error {
	a := seccompNotifAddfd{ID: c.id, Flags: unix.SECCOMP_ADDFD_FLAG_SETFD, Srcfd: uint32(sock), Newfd: uint32(c.FD)}
	if cloexec {
		a.NewfdFlags = unix.O_CLOEXEC
	}
	if err := l.ioctl(unix.SECCOMP_IOCTL_NOTIF_ADDFD, unsafe.Pointer(&a)); err != nil {
		return fmt.Errorf("giving the server the host socket: %w", err)
	}
	return l.Succeed(c)
}

// AnswerGetsockname answers getsockname call c with sa, a raw sockaddr,
// as the kernel does: at most the caller's *addrlen bytes of it, and its
// full length in *addrlen.
func (l *BindListener) AnswerGetsockname(c *BindCall, sa []byte) error {
	lb, err := l.read(c.Pid, c.addrlen, 4)
	if err != nil {
		return err
	}
	n := min(int(binary.NativeEndian.Uint32(lb)), len(sa))
	if n < 0 {
		return l.Fail(c, unix.EINVAL)
	}
	if n > 0 {
		if err := l.write(c.Pid, c.addr, sa[:n]); err != nil {
			return err
		}
	}
	binary.NativeEndian.PutUint32(lb, uint32(len(sa)))
	if err := l.write(c.Pid, c.addrlen, lb); err != nil {
		return err
	}
	return l.Succeed(c)
}

// write writes b at addr into the memory of thread pid.
func (l *BindListener) write(pid int, addr uint64, b []byte) error {
	local := unix.Iovec{Base: &b[0]}
	local.SetLen(len(b))
	n, err := unix.ProcessVMWritev(pid, []unix.Iovec{local}, []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}, 0)
	if err != nil {
		return fmt.Errorf("writing to the server's memory: %w", err)
	}
	if n != len(b) {
		return fmt.Errorf("writing to the server's memory: %d of %d bytes", n, len(b))
	}
	return nil
}

// ErrCallGone says a bind call is no longer waiting for an answer: a signal
// interrupted it (Go's runtime preempts threads with SIGURG) and the kernel
// restarts it, so it arrives again as a new call. Answer nothing.
var ErrCallGone = errors.New("the bind call was interrupted (the kernel restarts it)")

// ServerSocket returns a copy of the socket the server asked to bind
// (pidfd_getfd), close-on-exec, for the caller to read its options.
func (l *BindListener) ServerSocket(c *BindCall) (int, error) {
	pidfd, err := openPidfd(c.Pid)
	if err != nil {
		return -1, fmt.Errorf("opening the server's pidfd: %w", err)
	}
	defer unix.Close(pidfd)
	// The pid named the caller when the notification came; once the
	// notification is still valid after the open, the pidfd is the
	// caller's and not a new process's with the same number.
	if !l.valid(c) {
		return -1, ErrCallGone
	}
	fd, err := unix.PidfdGetfd(pidfd, c.FD, 0)
	if err != nil {
		return -1, fmt.Errorf("copying the server's socket: %w", err)
	}
	return fd, nil
}

// openPidfd opens a pidfd for the thread tid: for its process when tid is
// a process (the usual case), for the thread itself where the kernel
// supports that (6.9), or for the process found in /proc.
func openPidfd(tid int) (int, error) {
	fd, err := unix.PidfdOpen(tid, 0)
	// A thread that is not its process's leader gets EINVAL, or ENOENT
	// from newer kernels (6.9 on, which have PIDFD_THREAD).
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	if fd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD); err == nil {
		return fd, nil
	}
	tgid, terr := procStatusInt(tid, "Tgid")
	if terr != nil {
		return -1, err
	}
	return unix.PidfdOpen(tgid, 0)
}

// procStatusInt reads an integer field of /proc/PID/status.
func procStatusInt(pid int, field string) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == field {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// CloseOnExec reports whether the server's descriptor c.FD is
// close-on-exec, from /proc/PID/fdinfo (no system call reads another
// process's descriptor flags). It needs a /proc of the helper's PID
// namespace; ok is false when that cannot be read.
func CloseOnExec(c *BindCall) (cloexec, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", c.Pid, c.FD))
	if err != nil {
		return false, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(line, "flags:"); found {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 64)
			if err != nil {
				return false, false
			}
			return flags&unix.O_CLOEXEC != 0, true
		}
	}
	return false, false
}

// SocketInUse reports whether a process other than the caller holds the
// socket with inode ino, by looking through /proc/*/fd. Processes whose
// descriptors the caller cannot read are not seen.
func SocketInUse(ino uint64) bool {
	target := "socket:[" + strconv.FormatUint(ino, 10) + "]"
	self := strconv.Itoa(os.Getpid())
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return true // cannot tell: assume it is
	}
	for _, p := range procs {
		name := p.Name()
		if name == self || name[0] < '0' || name[0] > '9' {
			continue
		}
		dir := "/proc/" + name + "/fd/"
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if link, err := os.Readlink(dir + fd.Name()); err == nil && link == target {
				return true
			}
		}
	}
	return false
}

// BindNotifyPair makes the socket pair that carries the exec step's
// listener: mine stays with the helper (for ReceiveBindListener), theirs
// goes to the exec step as BindNotifyFD (ServerConfig.ExtraFiles) and is
// closed by the caller once the server started.
func BindNotifyPair() (mine, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the bind notification socket: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "bind-notify"), os.NewFile(uintptr(fds[1]), "bind-notify"), nil
}
