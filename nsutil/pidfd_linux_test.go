package nsutil

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// A Go server binds from whichever thread runs the goroutine: the helper
// must open a pidfd for a thread that is not its process's leader (whose
// pidfd_open fails with EINVAL, or ENOENT since Linux 6.9).
func TestOpenPidfdOfThread(t *testing.T) {
	tids := make(chan int)
	release := make(chan struct{})
	defer close(release)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tids <- unix.Gettid()
		<-release
	}()
	tid := <-tids
	if tid == unix.Getpid() {
		t.Skip("the goroutine ran on the main thread")
	}
	fd, err := openPidfd(tid)
	if err != nil {
		t.Fatalf("openPidfd(thread %d): %v", tid, err)
	}
	unix.Close(fd)
}
