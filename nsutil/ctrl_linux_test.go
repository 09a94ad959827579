package nsutil

import (
	"errors"
	"io"
	"os"
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
	want := Msg{Type: MsgExit, Code: 3, Signal: 15, Text: "x"}
	if err := a.Send(want, w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	got, files, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got.Type != want.Type || got.Code != want.Code || got.Signal != want.Signal || got.Text != want.Text || len(files) != 1 {
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
