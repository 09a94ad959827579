package instance

import (
	"encoding/binary"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// connPair is two connected ends, as a client and a server.
func connPair(t *testing.T) (*conn, *conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]*conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = newConn(c.(*net.UnixConn))
		t.Cleanup(func() { c.Close() })
	}
	return ends[0], ends[1]
}

func TestFrameLimits(t *testing.T) {
	a, b := connPair(t)
	// A frame of files and payload arrives whole, with its files.
	r, w := newPipe(t).r, newPipe(t).w
	if err := a.send(msgExec, ExecRequest{Args: []string{"x"}}, r, w); err != nil {
		t.Fatal(err)
	}
	env, files, err := b.recv()
	closeFiles(files)
	if err != nil || env.Type != msgExec || len(files) != 2 {
		t.Fatalf("recv = %v, %d files, %v", env.Type, len(files), err)
	}
	// A large frame (more than a socket buffer) arrives whole.
	big := make([]string, 30000) // 390 KB
	for i := range big {
		big[i] = "0123456789"
	}
	go a.send(msgPortAdd, portSpecs{Specs: big})
	var ps portSpecs
	if _, err := b.expect(msgPortAdd, &ps); err != nil || len(ps.Specs) != len(big) {
		t.Fatalf("a large frame: %d specs, %v", len(ps.Specs), err)
	}
	// An unexpected type is named.
	a.send(msgOK, nil)
	if _, err := b.expect(msgInfo, nil); err == nil || !strings.Contains(err.Error(), `unexpected "ok" message, want "info"`) {
		t.Errorf("unexpected type: %v", err)
	}
	// A length beyond the bound is refused before anything is allocated.
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrame+1)
	a.c.Write(hdr[:])
	if _, _, err := b.recv(); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("an oversized frame: %v", err)
	}
}

func TestFrameTooManyFiles(t *testing.T) {
	a, b := connPair(t)
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	files := make([]*os.File, maxFiles+1)
	for i := range files {
		files[i] = null
	}
	if err := a.send(msgExec, nil, files...); err != nil {
		t.Fatal(err)
	}
	_, got, err := b.recv()
	closeFiles(got)
	if err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a frame of %d files: %v", len(files), err)
	}
}
