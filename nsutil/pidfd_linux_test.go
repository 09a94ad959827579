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
	var onThread func()
	onThread = func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is the leader: keep it locked here, so
			// that the goroutine started now runs on another thread.
			go onThread()
			<-release
			return
		}
		tids <- unix.Gettid()
		<-release
	}
	go onThread()
	tid := <-tids
	if tid == unix.Getpid() {
		t.Fatalf("thread %d is the process's leader", tid)
	}
	fd, err := openPidfd(tid)
	if err != nil {
		t.Fatalf("openPidfd(thread %d): %v", tid, err)
	}
	unix.Close(fd)
}
