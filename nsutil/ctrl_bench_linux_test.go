package nsutil

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkCtrlSocketRoundTrip is what the helper would pay per outbound
// connection if it asked the parent for each host socket (one request, one
// answer with a descriptor), which the socket pool avoids:
//
//	go test -run '^$' -bench CtrlSocketRoundTrip ./nsutil/
func BenchmarkCtrlSocketRoundTrip(b *testing.B) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	helper, err := NewCtrl(os.NewFile(uintptr(fds[0]), "helper"))
	if err != nil {
		b.Fatal(err)
	}
	parent, err := NewCtrl(os.NewFile(uintptr(fds[1]), "parent"))
	if err != nil {
		b.Fatal(err)
	}
	defer helper.Close()
	defer parent.Close()
	go func() {
		for {
			m, files, err := Expect[WantSockets](parent)
			if err != nil {
				return
			}
			fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			f := os.NewFile(uintptr(fd), "sock")
			parent.Send(Sockets{Kind: m.Kind}, f)
			f.Close()
			for _, f := range files {
				f.Close()
			}
		}
	}()
	for b.Loop() {
		if err := helper.Send(WantSockets{Kind: "tcp4", N: 1}); err != nil {
			b.Fatal(err)
		}
		_, files, err := helper.Recv()
		if err != nil || len(files) != 1 {
			b.Fatal(err, len(files))
		}
		files[0].Close()
	}
}
