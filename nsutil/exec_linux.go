package nsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"
)

// ExecError is why the exec step could not run the command.
type ExecError struct {
	Command string
	Err     error
	// Setup is true when the step failed before it tried the command
	// (--confine could not build the view): nsbind's own failure, 125.
	Setup bool
}

func (e *ExecError) Error() string {
	if e.Setup {
		return e.Err.Error()
	}
	if e.Code() == 127 {
		return fmt.Sprintf("command not found: %s (%v; check its name and your PATH)", e.Command, e.Err)
	}
	return fmt.Sprintf("cannot run %s: %v", e.Command, e.Err)
}

func (e *ExecError) Unwrap() error { return e.Err }

// Code is the exit status for this failure, as a shell gives it: 127 when
// the command was not found, 126 when it was found but cannot be run.
func (e *ExecError) Code() int {
	if e.Setup {
		return 125
	}
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

// ExecOptions say what the exec step does before it becomes the server.
type ExecOptions struct {
	// KeepCaps keeps the namespace's capabilities (--root).
	KeepCaps bool
	// Direct installs the bind filter and sends its listener on
	// BindNotifyFD (seccomp_linux.go).
	Direct bool
	// Confine, if set, confines the server (Confine).
	Confine *ConfineConfig
	// Note, if set, is given the one line to print when the confinement
	// is weaker than designed (ConfineReport.Note). It is called before
	// the exec, with the exec step's stderr still the user's.
	Note func(string)
	// HandOver, if not nil, runs last before the exec, on the thread that
	// execs, when every descriptor from ExecReportFD up is close-on-exec:
	// it may put descriptors there for the server (--socket-activation's
	// sockets at 3.., internal/helper) and must keep the report descriptor
	// open elsewhere for a failed exec.
	HandOver func() error
}

// ExecServer is the body of the exec step, the last process nsbind runs
// before the server: it finds args[0], confines the server if asked,
// drops every capability unless KeepCaps, scopes the server's signals to
// itself (scopeSignals), with Direct installs the bind filter, and replaces
// itself with the server. It returns only on failure, with an *ExecError.
//
// Capabilities, no_new_privs, a Landlock domain, the mount namespace and
// the working directory Confine gives belong to a thread, and execve takes
// the calling thread's, so all of it happens on one locked thread. With no
// ambient capabilities an exec as a non-root uid leaves the server none;
// the empty bounding set and no_new_privs make sure no setuid or
// file-capability program run by the server can gain any (fact 8).
func ExecServer(args, env []string, o ExecOptions) error {
	runtime.LockOSThread()
	// Only 0, 1 and 2 reach the server. This closes the report descriptor
	// at a successful exec (which tells StartServer the server runs) and
	// any descriptor that whoever started nsbind left open.
	CloseOnExecFrom(ExecReportFD)
	path, err := LookPath(args[0])
	if err != nil {
		return err
	}
	if o.Confine != nil {
		// Before the capabilities go: building the view needs
		// CAP_SYS_ADMIN in the user namespace.
		if path, err = confineServer(path, *o.Confine, o); err != nil {
			return &ExecError{Command: args[0], Err: err, Setup: true}
		}
	}
	if !o.KeepCaps {
		if err := dropCapabilities(); err != nil {
			return &ExecError{Command: args[0], Err: err}
		}
	}
	if o.Confine == nil {
		// After dropCapabilities, which set no_new_privs; with KeepCaps
		// the thread still has CAP_SYS_ADMIN, which Landlock takes
		// instead.
		if err := scopeSignals(); err != nil {
			return &ExecError{Command: args[0], Err: err, Setup: true}
		}
	}
	if o.Direct {
		// Last before the exec: from here on this thread's bind(2)
		// calls wait for the helper.
		sendBindListener(BindNotifyFD)
	}
	if o.HandOver != nil {
		if err := o.HandOver(); err != nil {
			return &ExecError{Command: args[0], Err: err}
		}
	}
	err = unix.Exec(path, args, env)
	if errors.Is(err, syscall.ENOENT) {
		err = fmt.Errorf("%w (a script's interpreter may be missing)", err)
	}
	return &ExecError{Command: args[0], Err: err}
}

// confineServer confines the calling thread (Confine) so that the program
// at path, found before, still runs: a program in a tree the view hides
// (~/bin, /tmp) is bound back read-only, that file alone. It returns the
// program's path in the view.
func confineServer(path string, cfg ConfineConfig, o ExecOptions) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("--confine: %w", err)
	}
	exe := abs
	if prog, err := canonical(abs); err == nil {
		progHidden, linkHidden := hiddenByConfine(prog, cfg), hiddenByConfine(abs, cfg)
		if progHidden {
			cfg.AllowRead = append(slices.Clip(cfg.AllowRead), prog)
		}
		if progHidden || linkHidden {
			// A link in a hidden tree (~/bin/server -> /opt/server)
			// is gone with it: run what it points to.
			exe = prog
		}
	}
	rep, err := Confine(cfg)
	if err != nil {
		return "", err
	}
	if o.KeepCaps && rep.LandlockABI == 0 {
		// The server keeps CAP_SYS_ADMIN in the user namespace: without
		// Landlock, which forbids it any mount, it could unmount what
		// hides the home and the secrets.
		return "", errors.New("--confine: with --root the server keeps the capabilities to undo the mount layer, and this kernel has no Landlock to stop it: drop --root, or use a kernel with Landlock (Linux 5.13 with lsm=landlock)")
	}
	if n := rep.Note(); n != "" && o.Note != nil {
		o.Note(n)
	}
	return exe, nil
}

// hiddenByConfine reports whether the view Confine makes of cfg hides p
// (absolute): it lies in a hidden or private tree and in no tree bound
// back.
func hiddenByConfine(p string, cfg ConfineConfig) bool {
	for _, a := range slices.Concat([]string{cfg.WorkDir}, cfg.AllowRead, cfg.AllowWrite) {
		if c, err := canonical(a); err == nil && within(p, c) {
			return false
		}
	}
	for _, t := range slices.Concat(hiddenTrees, privateTrees, []string{cfg.Home, cfg.RuntimeDir}) {
		if t == "" {
			continue
		}
		if c, err := canonical(t); err == nil && c != "/" && within(p, c) {
			return true
		}
	}
	return false
}

// scopeSignals puts the calling thread, and so the server, in a Landlock
// domain that restricts nothing but signals (LANDLOCK_SCOPE_SIGNAL, ABI 6):
// the server and its children signal each other as before, but no process
// outside the domain. Without it the server could signal the helper, init
// of the PID namespace: kill -ABRT 1 from the server would end the run
// with a Go trace, and kill -STOP 1 would freeze every relay. The helper's
// own signals to the server, and the kernel's (SIGCHLD, the terminal's),
// are not affected. Abstract unix sockets are left unscoped: they belong
// to the network namespace, where only the helper and the server live, and
// a server may use abstract sockets of a process the user runs inside by
// other means. The filesystem is not touched.
//
// It needs no_new_privs or CAP_SYS_ADMIN in the user namespace (the exec
// step has one or the other by now), and does nothing on a kernel without
// signal scoping. The domain is the calling thread's only: execve takes it.
func scopeSignals() error {
	if landlockUsableABI() < 6 {
		return nil
	}
	fd, flags, err := landlock.Config{Scoped: landlock.ScopedSet(ll.ScopeSignal)}.BestEffort().NewRulesetFD()
	if err != nil {
		return fmt.Errorf("scoping the server's signals (Landlock): %w", err)
	}
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if err := ll.LandlockRestrictSelf(fd, flags); err != nil {
		return fmt.Errorf("scoping the server's signals (Landlock): %w", err)
	}
	return nil
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
