package forward

import (
	"errors"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// spliceChunk is the most one splice(2) moves; pipes are made this large.
// 1 MiB is what an unprivileged process may ask for
// (/proc/sys/fs/pipe-max-size) and what Go's own splice uses.
const spliceChunk = 1 << 20

// maxIdlePipes bounds the pipes the pool keeps between transfers.
const maxIdlePipes = 64

// pipePool keeps empty pipes for splice between transfers.
//
// Go's io.Copy between two *net.TCPConn splices too, but it holds a pipe
// (two descriptors) for each direction of a connection for as long as the
// copy runs, idle or not: an idle connection cost six descriptors in the
// relay, and a user's limit of 20,000 held barely 3,300 connections. Here a
// pipe is taken only once data is there and given back as soon as it has
// passed, so an idle connection holds its two sockets and nothing else, and
// the pipes in use are bounded by the transfers in flight.
type pipePool struct {
	mu   sync.Mutex
	free [][2]int
}

// pipes is the process's pool: pipes are a process-wide resource (the
// descriptor limit, the user's pipe buffer quota), shared by every relay.
var pipes pipePool

func (p *pipePool) get() ([2]int, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		fds := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return fds, nil
	}
	p.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fds, err
	}
	// Best effort: past the user's pipe quota the kernel keeps it small.
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, spliceChunk)
	return fds, nil
}

// put returns an empty pipe to the pool.
func (p *pipePool) put(fds [2]int) {
	p.mu.Lock()
	if len(p.free) < maxIdlePipes {
		p.free = append(p.free, fds)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	closePipe(fds)
}

func closePipe(fds [2]int) {
	unix.Close(fds[0])
	unix.Close(fds[1])
}

// copyBuffer is the size of the buffers of a copy through user space.
const copyBuffer = 64 << 10

// copyBufs holds the buffers of copies through user space, taken only
// while data is there.
var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, copyBuffer)
	return &b
}}

// copyStream copies src to dst with splice(2) until src ends, and returns
// the bytes copied. The bytes never enter user space. It waits for data
// without holding a pipe.
//
// A process out of descriptors (EMFILE, ENFILE) or memory for a pipe
// copies what is there through a buffer in user space instead, and tries a
// pipe again for the next data: the connection goes on, only slower.
func copyStream(dst, src leg) (int64, error) {
	rsrc, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	rdst, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		total int64
		fds   [2]int
		have  bool    // a pipe is taken (and empty, between transfers)
		buf   *[]byte // a buffer is taken (no pipe could be had)
	)
	defer func() {
		if have {
			pipes.put(fds)
		}
	}()
	for {
		var (
			n    int64
			serr error
		)
		err := rsrc.Read(func(fd uintptr) bool {
			if !have {
				var perr error
				if fds, perr = pipes.get(); perr == nil {
					have = true
				} else if !outOfResources(perr) {
					serr = perr
					return true
				}
			}
			if !have {
				n, serr = readBuffered(int(fd), &buf)
			} else {
				for {
					n, serr = splice(int(fd), fds[1], spliceChunk)
					if serr != unix.EINTR {
						break
					}
				}
				if serr == unix.EAGAIN {
					// Nothing to read (the pipe is empty, so it is not
					// full): wait for data without the pipe.
					pipes.put(fds)
					have = false
				}
			}
			return serr != unix.EAGAIN
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			return total, wrapErrno(err)
		}
		if n == 0 {
			if buf != nil {
				copyBufs.Put(buf)
			}
			return total, nil // EOF
		}
		if buf != nil {
			var m int64
			m, err = writeBuffered(rdst, (*buf)[:n])
			total += m
			copyBufs.Put(buf)
			buf = nil
			if err != nil {
				return total, wrapErrno(err)
			}
			continue
		}
		left := n
		err = rdst.Write(func(fd uintptr) bool {
			for left > 0 {
				m, e := splice(fds[0], int(fd), int(left))
				switch {
				case e == unix.EINTR:
					continue
				case e == unix.EAGAIN:
					return false // dst's buffer is full: wait
				case e != nil:
					serr = e
					return true
				}
				left -= m
				total += m
			}
			return true
		})
		if err == nil {
			err = serr
		}
		if err != nil {
			// The pipe may still hold data: it cannot go back.
			closePipe(fds)
			have = false
			return total, wrapErrno(err)
		}
	}
}

// splice moves up to n bytes from fd in to fd out without blocking
// (SPLICE_F_NONBLOCK, and the sockets and pipes of a relay are all
// non-blocking). It enters the kernel without telling Go's scheduler
// (RawSyscall): a splice that delivers a large chunk into a loopback
// socket runs the receiver's softirq and takes tens of microseconds, long
// enough for the scheduler's monitor to take the processor away and wake
// another thread for it on every call, which cost more than the splice
// saved. A call that cannot block needs none of that.
func splice(in, out, n int) (int64, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int64(r), nil
}

// readBuffered reads what socket fd holds into a buffer it takes from
// copyBufs, and leaves it in *buf unless there was nothing to read (EAGAIN).
func readBuffered(fd int, buf **[]byte) (int64, error) {
	b := copyBufs.Get().(*[]byte)
	for {
		n, err := unix.Read(fd, *b)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			copyBufs.Put(b)
			return 0, err
		}
		*buf = b
		return int64(n), nil
	}
}

// writeBuffered writes b to the socket behind rc, waiting while its buffer
// is full, and returns the bytes written.
func writeBuffered(rc syscall.RawConn, b []byte) (int64, error) {
	var (
		total int64
		serr  error
	)
	err := rc.Write(func(fd uintptr) bool {
		for len(b) > 0 {
			m, e := unix.Write(int(fd), b)
			switch {
			case e == unix.EINTR:
				continue
			case e == unix.EAGAIN:
				return false
			case e != nil:
				serr = e
				return true
			}
			b = b[m:]
			total += int64(m)
		}
		return true
	})
	if err == nil {
		err = serr
	}
	return total, err
}

// wrapErrno makes a raw errno from splice look like Go's own errors, so
// callers can test it with errors.Is as for io.Copy.
func wrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &net.OpError{Op: "splice", Net: "tcp", Err: errno}
	}
	return err
}
