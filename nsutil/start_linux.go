package nsutil

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// helperCaps are the ambient capabilities the helper keeps after its exec,
// although it runs as the user's own uid inside (fact 8 of DESIGN.md):
// CAP_NET_ADMIN brings lo up and writes the namespace's net sysctls,
// CAP_SYS_ADMIN mounts a fresh /proc, CAP_SETPCAP lets the exec step drop
// the server's bounding set, CAP_NET_RAW sends the ICMP errors that tell a
// program inside its outbound connection failed (nfqueue_linux.go).
// Without them the helper could do none of it (an exec as a non-root uid
// clears every capability that is not ambient).
func helperCaps() []uintptr {
	return []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP, unix.CAP_NET_RAW}
}

// Config says how to start the helper.
type Config struct {
	// Path is the program to run (nsbind itself), Args its arguments
	// (Args[0], the role, included) and Env its environment.
	Path string
	Args []string
	Env  []string
	// Files are inherited by the helper from FirstFD on (the control
	// channel is CtrlFD). Thousands are fine: the kernel bounds them only
	// by the descriptor limit, unlike the environment.
	Files []*os.File
	// IDs is how the helper gets its ids (PlanIDs): the maps are written
	// after the helper has started (WriteIDMaps) and, with IDs.Switch, it
	// gets CAP_SETUID and CAP_SETGID to change to them (EnterIDs). The
	// helper must not use its ids before it is told the maps are there
	// (the configuration message follows them). Nil maps the caller to
	// itself before the exec, as Go writes a one-line map: only for
	// nsbind's own probe (nsbind doctor), which runs no command of the
	// user's.
	IDs *IDPlan
	// Stdin, Stdout and Stderr are the helper's standard descriptors.
	Stdin, Stdout, Stderr *os.File
	Logger                *slog.Logger
}

// Helper is a started helper process.
type Helper struct {
	// Pid is the helper's process id on the host.
	Pid int
	// PIDNamespace is true when the helper is init of its own PID
	// namespace (and has its own mount namespace).
	PIDNamespace bool
	// NoPIDNamespace is why the kernel refused the PID and mount
	// namespaces when PIDNamespace is false.
	NoPIDNamespace error
	// Ctrl is the parent's end of the control channel.
	Ctrl *Ctrl

	exited chan struct{}
	state  *os.ProcessState
	err    error
}

// Start starts the helper in new user and network namespaces, and, where
// the kernel allows it, new PID and mount namespaces, and writes its id
// maps (cfg.IDs) before it returns. A map that cannot be written kills
// the helper and returns the *IDMapError.
//
// Go's Pdeathsig fires when the thread that forked the child exits, not the
// process (fact 7). Start forks from a goroutine that stays locked to its
// thread until the helper has exited, so the helper gets SIGKILL exactly
// when nsbind dies. The helper also watches the control channel.
func Start(cfg Config) (*Helper, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the control channel: %w", err)
	}
	mine := os.NewFile(uintptr(fds[0]), "ctrl")
	theirs := os.NewFile(uintptr(fds[1]), "ctrl")
	defer theirs.Close()
	ctrl, err := NewCtrl(mine)
	if err != nil {
		return nil, err
	}

	h := &Helper{Ctrl: ctrl, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread ends with this goroutine, after the
		// helper has exited.
		defer close(h.exited)
		flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNET)
		full := flags | unix.CLONE_NEWPID | unix.CLONE_NEWNS
		cmd := command(cfg, theirs, full)
		err := cmd.Start()
		if err != nil {
			// Some hosts refuse a PID or mount namespace but allow the
			// rest (a seccomp profile, a container): go on without them.
			first := err
			cmd = command(cfg, theirs, flags)
			if err = cmd.Start(); err == nil {
				cfg.Logger.Debug("no PID namespace: running without one", "err", first)
				h.NoPIDNamespace = first
			}
		} else {
			h.PIDNamespace = true
		}
		if err != nil {
			started <- err
			return
		}
		h.Pid = cmd.Process.Pid
		// After the PID-namespace retry: the maps belong to the helper
		// that runs. Until they are written, its ids are unmapped inside.
		if cfg.IDs != nil {
			if err := WriteIDMaps(h.Pid, *cfg.IDs); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				started <- err
				return
			}
		}
		started <- nil
		h.err = cmd.Wait()
		h.state = cmd.ProcessState
	}()
	if err := <-started; err != nil {
		ctrl.Close()
		var me *IDMapError
		if errors.As(err, &me) {
			return nil, err
		}
		// Go reports a refused clone(2) and a refused write of the uid or
		// gid map alike, as the errno of the exec.
		return nil, &NamespaceError{Step: StepCreate, Err: err}
	}
	return h, nil
}

func command(cfg Config, ctrl *os.File, flags uintptr) *exec.Cmd {
	attr := &syscall.SysProcAttr{
		Cloneflags:  flags,
		AmbientCaps: helperCaps(),
		Pdeathsig:   syscall.SIGKILL,
	}
	switch {
	case cfg.IDs == nil:
		// One line per map, the caller's own ids, written by Go before
		// the exec: all an unprivileged user may write. Setgroups must
		// stay denied for that (enabling it gives EPERM).
		uid, gid := os.Getuid(), os.Getgid()
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: uid, HostID: uid, Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: gid, HostID: gid, Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	case cfg.IDs.Switch:
		// Host root's child is still kernel uid 0 after clone(2), and
		// execs before its maps exist, as an id unmapped inside: only
		// ambient capabilities survive that exec, so these two must be
		// among them for EnterIDs to change to the plan's ids.
		attr.AmbientCaps = append(attr.AmbientCaps, unix.CAP_SETUID, unix.CAP_SETGID)
	}
	if cfg.IDs != nil && cfg.IDs.UID == 0 {
		// --root: the server has every capability of the namespace, and
		// the helper, which execs before its maps exist, only these. The
		// kernel lets it read the server's memory and take its
		// descriptors (the --direct director) only with CAP_SYS_PTRACE
		// when the server's capabilities are not a subset of its own.
		attr.AmbientCaps = append(attr.AmbientCaps, unix.CAP_SYS_PTRACE)
		// The map has other ids, and a server that starts as root
		// changes to one (nginx's www-data, dnsmasq's nobody): kill(2)
		// of a process whose real and saved uid are neither of the
		// helper's needs CAP_KILL in that process's user namespace.
		// Without it the helper could not pass on a signal (SIGTERM,
		// nsbind stop), reach a daemon's workers, or kill what is left
		// at the end when there is no PID namespace to take it. In the
		// run's namespace only, it reaches the run's processes and no
		// process on the host; the server, root inside, has it anyway.
		attr.AmbientCaps = append(attr.AmbientCaps, unix.CAP_KILL)
	}
	return &exec.Cmd{
		Path:        cfg.Path,
		Args:        cfg.Args,
		Env:         cfg.Env,
		Stdin:       cfg.Stdin,
		Stdout:      cfg.Stdout,
		Stderr:      cfg.Stderr,
		ExtraFiles:  append([]*os.File{ctrl}, cfg.Files...),
		SysProcAttr: attr,
	}
}

// Done is closed when the helper has exited.
func (h *Helper) Done() <-chan struct{} { return h.exited }

// State is the helper's exit state; it is valid once Done is closed.
func (h *Helper) State() (*os.ProcessState, error) { return h.state, h.err }

// Kill kills the helper (and so, as init of its PID namespace, everything
// inside).
func (h *Helper) Kill() error {
	err := syscall.Kill(h.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
