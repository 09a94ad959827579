package helper

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// --socket-activation: the server gets the host sockets themselves, the
// systemd way (sd_listen_fds(3)): at descriptors 3.. with LISTEN_FDS,
// LISTEN_PID (its own pid) and LISTEN_FDNAMES. Nothing relays and no bind
// filter waits: the server accepts the host's clients on the host sockets,
// on any kernel, with no copy. It gets every published socket, and one it
// does not use (a family or port it ignores) is its own business: the port
// stays bound, and connections to it wait in its backlog, as they would
// for a socket unit's socket the service never takes.
//
// The helper starts the exec step with the sockets at the descriptors
// right after its fixed ones (the report pipe at ExecReportFD), each named
// on the exec step's command line by execListenFD. That way, when the exec
// step starts, descriptors 3..3+N-1 are the report pipe and all but the
// last socket: its own, none of the Go runtime's, which opens its
// descriptors (epoll, the cgroup files read for GOMAXPROCS) above them.
// The exec step can so move the sockets to 3.. without swapping one of
// the runtime's under it (forward.ActivationFDs).

// execListenFD is the exec step's flag for one socket to hand over:
// --listen-fd=FD:NAME, with FD the exec step's descriptor of it and NAME
// its LISTEN_FDNAMES entry. In argv, like the other flags, so nothing in
// the environment can hand the server descriptors.
const execListenFD = "--listen-fd"

// listenFiles are the exec step's flags and extra files for
// --socket-activation: every published host socket, the first at the exec
// step's descriptor first. The files are the helper's own descriptors of
// the sockets (FirstFD on); the helper closes them once the exec step has
// them, and keeps none.
func (h *helper) listenFiles(first int) (args []string, files []*os.File) {
	for i, sc := range h.cfg.Sockets {
		hs := forward.HostSocket{Binding: forward.Binding{Proto: forward.Proto(sc.Proto), Inside: sc.Inside}, Addr: sc.Host}
		args = append(args, fmt.Sprintf("%s=%d:%s", execListenFD, first+i, forward.FDName(hs)))
		files = append(files, os.NewFile(uintptr(nsutil.FirstFD+i), sc.Host.String()))
	}
	return args, files
}

// handOver is the exec step's part of --socket-activation.
type handOver struct {
	fds   []int
	names []string
	// report is where the report pipe went, 0 while it is at
	// ExecReportFD.
	report int
}

// parseArg takes one --listen-fd=FD:NAME of the exec step's command line;
// ok is false for any other argument.
func (a *handOver) parseArg(arg string) (ok bool, err error) {
	v, ok := strings.CutPrefix(arg, execListenFD+"=")
	if !ok {
		return false, nil
	}
	fdText, name, _ := strings.Cut(v, ":")
	fd, err := strconv.Atoi(fdText)
	if err != nil || fd <= nsutil.ExecReportFD {
		return true, fmt.Errorf("the exec step is started by nsbind only (bad %s %q)", execListenFD, v)
	}
	a.fds = append(a.fds, fd)
	a.names = append(a.names, name)
	return true, nil
}

// active reports whether the exec step hands sockets over.
func (a *handOver) active() bool { return len(a.fds) > 0 }

// env is the server's environment: env without any LISTEN_* plus the
// server's own. The exec step's pid is the server's: execve keeps it.
func (a *handOver) env(env []string) []string {
	return append(forward.WithoutActivationEnv(env), forward.ActivationEnv(a.names, os.Getpid())...)
}

// move puts the sockets at 3.. for the server, right before the exec
// (nsutil.ExecServer's handOver). The report pipe is at 3, where the first
// socket goes: it moves above the sockets first, still close-on-exec, so a
// failed exec can report (restoreReport) and a successful one closes it.
func (a *handOver) move() error {
	r, err := unix.FcntlInt(nsutil.ExecReportFD, unix.F_DUPFD_CLOEXEC, forward.ListenFDsStart+len(a.fds))
	if err != nil {
		return fmt.Errorf("moving the report pipe: %w", err)
	}
	a.report = r
	for _, fd := range a.fds {
		// Blocking, as systemd passes them (NonBlocking=no): a server
		// may accept on them without polling. The helper and the parent
		// no longer use them, so no one else minds the shared flag.
		if err := unix.SetNonblock(fd, false); err != nil {
			return fmt.Errorf("socket descriptor %d: %w", fd, err)
		}
	}
	return forward.ActivationFDs(a.fds)
}

// restoreReport puts the report pipe back at ExecReportFD after a failed
// exec, where nsutil.ReportExecError writes.
func (a *handOver) restoreReport() {
	if a.report > 0 {
		unix.Dup3(a.report, nsutil.ExecReportFD, unix.O_CLOEXEC)
	}
}
