package nsutil

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Message types on the control channel.
const (
	// From the helper to the parent.
	MsgReady   = "ready"   // the server runs; Pid is its pid inside
	MsgFail    = "fail"    // the run failed before the server started; Code, Text
	MsgExit    = "exit"    // the server ended; Code or Signal
	MsgStopped = "stopped" // the server was stopped (Ctrl-Z)
	MsgStats   = "stats"   // counters of the published ports, before MsgExit; Data
	MsgProbe   = "probe"   // what the probe found inside (nsbind doctor); Data
	// From the parent to the helper.
	MsgSignal   = "signal"   // deliver Signal to the server
	MsgContinue = "continue" // continue a stopped server; Foreground says whether it gets the terminal
	// Both ways: the helper asks for N unconnected host sockets of Kind
	// (outbound connections); the parent answers with them attached.
	MsgSockets = "sockets"
	// With --direct (see cmd/nsbind/direct_linux.go).
	MsgRelay     = "relay"     // helper → parent: relay the attached host socket Socket on the host to host socket Target
	MsgUnrelay   = "unrelay"   // helper → parent: stop relaying Socket, answer MsgUnrelayed
	MsgUnrelayed = "unrelayed" // parent → helper: Socket is no longer relayed
)

// Msg is one message on the control channel.
type Msg struct {
	Type       string `json:"t"`
	Code       int    `json:"code,omitempty"`
	Signal     int    `json:"sig,omitempty"`
	Pid        int    `json:"pid,omitempty"`
	Text       string `json:"text,omitempty"`
	Foreground bool   `json:"fg,omitempty"`
	Kind       string `json:"kind,omitempty"`
	N          int    `json:"n,omitempty"`
	// Socket and Target index the published host sockets (MsgRelay,
	// MsgUnrelay, MsgUnrelayed).
	Socket int `json:"sock,omitempty"`
	Target int `json:"target,omitempty"`
	// Data is a payload whose format belongs to the message type.
	Data json.RawMessage `json:"data,omitempty"`
}

// maxMsg bounds one message; messages are small JSON objects.
const maxMsg = 64 << 10

// MaxFiles bounds the files passed with one message.
const MaxFiles = 64

// Ctrl is one end of the control channel between nsbind and its helper: a
// SOCK_SEQPACKET socket pair, so each message arrives whole and a closed
// end reads as EOF. Send may be called from any goroutine; Recv from one
// at a time.
type Ctrl struct {
	c *net.UnixConn
	// buf and oob are Recv's, reused: one Recv runs at a time.
	buf, oob []byte
}

// NewCtrl wraps f, a SOCK_SEQPACKET socket; f is closed.
func NewCtrl(f *os.File) (*Ctrl, error) {
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("opening the control channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("opening the control channel: fd %d is not a unix socket", f.Fd())
	}
	return &Ctrl{c: uc}, nil
}

// Send sends m, with files passed alongside (SCM_RIGHTS) if any.
func (c *Ctrl) Send(m Msg, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.c.WriteMsgUnix(b, oob, nil)
	return err
}

// Recv receives one message and the files passed with it. At EOF (the
// other end is gone) it returns io.EOF.
func (c *Ctrl) Recv() (Msg, []*os.File, error) {
	if c.buf == nil {
		c.buf = make([]byte, maxMsg)
		c.oob = make([]byte, unix.CmsgSpace(4*MaxFiles))
	}
	buf, oob := c.buf, c.oob
	n, oobn, _, _, err := c.c.ReadMsgUnix(buf, oob)
	if err != nil {
		return Msg{}, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return Msg{}, nil, fmt.Errorf("reading the control channel: %w", err)
		}
		for _, cm := range cmsgs {
			fds, err := unix.ParseUnixRights(&cm)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "ctrl-fd"))
			}
		}
	}
	if n == 0 {
		for _, f := range files {
			f.Close()
		}
		return Msg{}, nil, io.EOF
	}
	var m Msg
	if err := json.Unmarshal(buf[:n], &m); err != nil {
		return Msg{}, files, fmt.Errorf("reading the control channel: %w", err)
	}
	return m, files, nil
}

// Close closes this end.
func (c *Ctrl) Close() error { return c.c.Close() }
