package nsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecError is why the exec step could not run the command.
type ExecError struct {
	Command string
	Err     error
}

func (e *ExecError) Error() string {
	if e.Code() == 127 {
		return fmt.Sprintf("command not found: %s (%v; check its name and your PATH)", e.Command, e.Err)
	}
	return fmt.Sprintf("cannot run %s: %v", e.Command, e.Err)
}

func (e *ExecError) Unwrap() error { return e.Err }

// Code is the exit status for this failure, as a shell gives it: 127 when
// the command was not found, 126 when it was found but cannot be run.
func (e *ExecError) Code() int {
	if errors.Is(e.Err, exec.ErrNotFound) || errors.Is(e.Err, fs.ErrNotExist) {
		return 127
	}
	return 126
}

// LookPath finds command as the exec step will, on the PATH of the calling
// process.
func LookPath(command string) (string, error) {
	path, err := exec.LookPath(command)
	if err != nil {
		var ee *exec.Error
		if errors.As(err, &ee) {
			err = ee.Err
		}
		if errors.Is(err, fs.ErrPermission) {
			// LookPath says "permission denied" for a file that exists but
			// is not executable; say which.
			err = fmt.Errorf("%w (is it executable? chmod +x %s)", err, command)
		}
		return "", &ExecError{Command: command, Err: err}
	}
	return path, nil
}

// ExecServer is the body of the exec step, the last process nsbind runs
// before the server: it finds args[0], drops every capability unless
// keepCaps, with direct installs the bind filter and sends its listener on
// BindNotifyFD (seccomp_linux.go), and replaces itself with the server. It
// returns only on failure, with an *ExecError.
//
// handOver, if not nil, runs last before the exec, on the thread that
// execs, when every descriptor from ExecReportFD up is close-on-exec: it
// may put descriptors there for the server (--socket-activation's sockets
// at 3.., internal/helper) and must keep the report descriptor open
// elsewhere for a failed exec.
//
// Capabilities and no_new_privs belong to a thread, and execve takes the
// calling thread's, so all of it happens on one locked thread. With no
// ambient capabilities an exec as a non-root uid leaves the server none;
// the empty bounding set and no_new_privs make sure no setuid or
// file-capability program run by the server can gain any (fact 8).
func ExecServer(args, env []string, keepCaps, direct bool, handOver func() error) error {
	runtime.LockOSThread()
	// Only 0, 1 and 2 reach the server. This closes the report descriptor
	// at a successful exec (which tells StartServer the server runs) and
	// any descriptor that whoever started nsbind left open.
	CloseOnExecFrom(ExecReportFD)
	path, err := LookPath(args[0])
	if err != nil {
		return err
	}
	if !keepCaps {
		if err := dropCapabilities(); err != nil {
			return &ExecError{Command: args[0], Err: err}
		}
	}
	if direct {
		// Last before the exec: from here on this thread's bind(2)
		// calls wait for the helper.
		sendBindListener(BindNotifyFD)
	}
	if handOver != nil {
		if err := handOver(); err != nil {
			return &ExecError{Command: args[0], Err: err}
		}
	}
	err = unix.Exec(path, args, env)
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%w (a script's interpreter may be missing)", err)
	}
	return &ExecError{Command: args[0], Err: err}
}

func dropCapabilities() error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	for c := 0; c <= lastCap(); c++ {
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("clearing capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	return nil
}

// lastCap is the highest capability number the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	return unix.CAP_LAST_CAP
}

// CloseOnExecFrom marks every descriptor from fd up close-on-exec, so that
// none of them reaches a program the process runs. Go marks its own
// descriptors so; this catches those the process inherited.
func CloseOnExecFrom(fd int) {
	if err := unix.CloseRange(uint(fd), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	// Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC.
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && n >= fd {
			unix.CloseOnExec(n)
		}
	}
}
