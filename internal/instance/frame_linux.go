package instance

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// A SOCK_STREAM socket with length-prefixed frames rather than
// SOCK_SEQPACKET: a seqpacket message must fit the socket's send buffer
// (about 208 KiB unprivileged), and the Info of a run publishing a range of
// thousands of ports may not.

// maxFrame bounds one frame's JSON.
const maxFrame = 16 << 20

// maxFiles bounds the files on one frame (exec passes three).
const maxFiles = 8

// conn is one end of a control socket connection. send may be called from
// any goroutine; recv from one at a time.
type conn struct {
	c   *net.UnixConn
	wmu sync.Mutex
	oob []byte // recv's
}

func newConn(c *net.UnixConn) *conn {
	return &conn{c: c, oob: make([]byte, unix.CmsgSpace(4*maxFiles))}
}

// send sends one frame of type t with payload v (nil: none) and files.
func (c *conn) send(t msgType, v any, files ...*os.File) error {
	env := envelope{Type: t}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		env.Data = b
	}
	b, err := json.Marshal(env)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("sending %s: %d bytes, more than %d", t, len(b), maxFrame)
	}
	frame := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(frame, uint32(len(b)))
	copy(frame[4:], b)
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	// The files ride on the frame's first bytes; a stream socket may take
	// a large frame in parts.
	n, _, err := c.c.WriteMsgUnix(frame, oob, nil)
	if err == nil && n < len(frame) {
		_, err = c.c.Write(frame[n:])
	}
	if err != nil {
		return fmt.Errorf("sending %s: %w", t, err)
	}
	return nil
}

// recv reads one frame. At a clean end (the peer closed between frames) it
// returns io.EOF. Files that came with the frame are returned even with an
// error, for the caller to close.
func (c *conn) recv() (envelope, []*os.File, error) {
	var files []*os.File
	got := 0
	read := func(p []byte) error {
		for len(p) > 0 {
			n, oobn, flags, _, err := c.c.ReadMsgUnix(p, c.oob)
			if oobn > 0 {
				files = append(files, parseRights(c.oob[:oobn])...)
			}
			if flags&unix.MSG_CTRUNC != 0 {
				return fmt.Errorf("more than %d files on one frame", maxFiles)
			}
			if err != nil {
				return err
			}
			got += n
			p = p[n:]
			if n == 0 {
				return io.EOF
			}
		}
		return nil
	}
	var hdr [4]byte
	if err := read(hdr[:]); err != nil {
		if errors.Is(err, io.EOF) && got > 0 {
			err = io.ErrUnexpectedEOF
		}
		return envelope{}, files, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return envelope{}, files, fmt.Errorf("a frame of %d bytes, more than %d", n, maxFrame)
	}
	buf := make([]byte, n)
	if err := read(buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return envelope{}, files, err
	}
	var env envelope
	if err := json.Unmarshal(buf, &env); err != nil {
		return envelope{}, files, fmt.Errorf("reading a frame: %w", err)
	}
	return env, files, nil
}

// expect reads a frame of type want into out (nil: no payload). An error
// frame becomes its *RemoteError; any other type is an error naming both.
func (c *conn) expect(want msgType, out any) ([]*os.File, error) {
	env, files, err := c.recv()
	if err != nil {
		closeFiles(files)
		return nil, err
	}
	if env.Type == msgError && want != msgError {
		closeFiles(files)
		re := &RemoteError{}
		if err := json.Unmarshal(env.Data, re); err != nil {
			return nil, fmt.Errorf("reading an error answer: %w", err)
		}
		return nil, re
	}
	if env.Type != want {
		closeFiles(files)
		return nil, fmt.Errorf("unexpected %q message, want %q", env.Type, want)
	}
	if out != nil {
		if err := json.Unmarshal(env.Data, out); err != nil {
			closeFiles(files)
			return nil, fmt.Errorf("reading %s: %w", want, err)
		}
	}
	return files, nil
}

func (c *conn) Close() error { return c.c.Close() }

// parseRights turns the SCM_RIGHTS messages of oob into files. Go receives
// with MSG_CMSG_CLOEXEC, so none leaks into a child before it is wrapped.
func parseRights(oob []byte) []*os.File {
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, cm := range cmsgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "passed-fd"))
		}
	}
	return files
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// peerCred returns the credentials of the process at the other end (for
// a connection accepted from a listener: its connect(); for a connected
// client: the server's listen()).
func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("reading the peer's credentials: %w", cerr)
	}
	return cred, nil
}
