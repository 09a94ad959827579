package nsutil

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func ctrlPair(t *testing.T) (*Ctrl, *Ctrl) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewCtrl(os.NewFile(uintptr(fds[0]), "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewCtrl(os.NewFile(uintptr(fds[1]), "b"))
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

func TestCtrlCarriesMessagesAndFiles(t *testing.T) {
	a, b := ctrlPair(t)
	defer b.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := Exit{Code: 143, Signal: 15}
	if err := a.Send(want, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, files, err := Expect[Exit](b)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || len(files) != 1 {
		t.Fatalf("got %+v with %d files, want %+v with 1", got, len(files), want)
	}
	// The passed descriptor is the pipe's write end: writing to it reaches r.
	files[0].Write([]byte("hi"))
	files[0].Close()
	b2, _ := io.ReadAll(r)
	if string(b2) != "hi" {
		t.Fatalf("read %q through the passed descriptor", b2)
	}
	a.Close()
	if _, _, err := b.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv after the other end closed: %v, want EOF", err)
	}
}

// A receiver that expects one message type rejects another, and a type
// not in the catalogue is an error.
func TestCtrlRejectsUnexpected(t *testing.T) {
	a, b := ctrlPair(t)
	defer a.Close()
	defer b.Close()
	a.Send(Ready{Pid: 7})
	if _, _, err := Expect[ConfigPart](b); err == nil || !strings.Contains(err.Error(), `unexpected message "ready", want "config"`) {
		t.Fatalf("Expect[ConfigPart] of a ready: %v", err)
	}
	raw(t, a, []byte(`{"t":"frobnicate"}`), nil)
	if _, _, err := b.Recv(); err == nil || !strings.Contains(err.Error(), "unknown message type") {
		t.Fatalf("unknown type: %v", err)
	}
}

// raw sends b on c as one datagram with oob.
func raw(t *testing.T, c *Ctrl, b, oob []byte) {
	t.Helper()
	if _, _, err := c.c.WriteMsgUnix(b, oob, nil); err != nil {
		t.Fatal(err)
	}
}

// Recv reports a message larger than its buffer (MSG_TRUNC) and
// descriptors that did not fit (MSG_CTRUNC) instead of a cut message.
func TestCtrlReportsTruncation(t *testing.T) {
	a, b := ctrlPair(t)
	defer a.Close()
	defer b.Close()
	a.c.SetWriteBuffer(4 * maxMsg)
	b.c.SetReadBuffer(4 * maxMsg)
	raw(t, a, make([]byte, maxMsg+100), nil)
	if _, _, err := b.Recv(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("an oversized message: %v, want ErrTruncated", err)
	}
	fds := make([]int, MaxFiles+8)
	for i := range fds {
		fds[i] = int(os.Stdin.Fd())
	}
	raw(t, a, []byte(`{"t":"stopped"}`), unix.UnixRights(fds...))
	if _, files, err := b.Recv(); !errors.Is(err, ErrFilesLost) || files != nil {
		t.Fatalf("too many descriptors: %v (%d files), want ErrFilesLost", err, len(files))
	}
	// The channel goes on after both.
	a.Send(Stopped{})
	if _, _, err := Expect[Stopped](b); err != nil {
		t.Fatal(err)
	}
}

// A configuration far larger than one message arrives whole.
func TestCtrlConfigInParts(t *testing.T) {
	a, b := ctrlPair(t)
	defer a.Close()
	defer b.Close()
	cfg := HelperConfig{Command: []string{"true"}}
	for i := range 20000 {
		cfg.Sockets = append(cfg.Sockets, SocketConfig{Proto: "tcp", Host: netip.AddrPortFrom(netip.IPv6Loopback(), uint16(i)), Inside: uint16(i)})
	}
	done := make(chan error, 1)
	go func() { done <- a.SendConfig(cfg) }()
	got, err := b.RecvConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(got.Sockets) != len(cfg.Sockets) || got.Sockets[19999] != cfg.Sockets[19999] {
		t.Fatalf("got %d sockets, want %d", len(got.Sockets), len(cfg.Sockets))
	}
}

func TestExitCodes(t *testing.T) {
	if got := (Status{Code: 7}).ExitCode(); got != 7 {
		t.Errorf("exit 7 → %d", got)
	}
	if got := (Status{Signal: syscall.SIGTERM}).ExitCode(); got != 143 {
		t.Errorf("SIGTERM → %d, want 143", got)
	}
	_, err := LookPath("no-such-command-nsbind")
	if FailureCode(err) != 127 {
		t.Errorf("missing command → %d, want 127", FailureCode(err))
	}
	f, _ := os.CreateTemp(t.TempDir(), "notexec")
	f.Close()
	_, err = LookPath(f.Name())
	if FailureCode(err) != 126 {
		t.Errorf("not executable (%v) → %d, want 126", err, FailureCode(err))
	}
	if FailureCode(errors.New("other")) != 125 {
		t.Error("other errors should be 125")
	}
}
