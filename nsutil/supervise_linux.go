package nsutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecReportFD is the descriptor on which the exec step reports a failure
// to run the command. It is close-on-exec, so a successful exec closes it
// with nothing written.
const ExecReportFD = 3

// ServerConfig says how to start the server through the exec step.
type ServerConfig struct {
	// Path, Args and Env run the exec step (nsbind itself in its exec
	// role), which runs the server.
	Path string
	Args []string
	Env  []string
	// Foreground gives the terminal on Stdin to the server's process
	// group, as a shell does for a foreground job, so Ctrl-C and Ctrl-Z
	// reach the server and an interactive shell inside has job control.
	Foreground            bool
	Stdin, Stdout, Stderr *os.File
	// ExtraFiles are inherited by the exec step from ExecReportFD+1 on
	// (BindNotifyFD with --direct).
	ExtraFiles []*os.File
}

// Status is how the server ended.
type Status struct {
	Code   int
	Signal syscall.Signal
}

// ExitCode is the status as a shell reports it: the exit code, or 128+N
// when the server died of signal N.
func (s Status) ExitCode() int {
	if s.Signal != 0 {
		return 128 + int(s.Signal)
	}
	return s.Code
}

// Server is the running server, a child of the calling process in a
// process group of its own.
type Server struct {
	// Pid is the server's pid in the caller's PID namespace; it is also
	// the server's process group.
	Pid     int
	exited  chan Status
	stopped chan struct{}
	empty   chan Status
	stdin   *os.File
	// children are the other programs started while the server runs
	// (StartChild, child_linux.go), which the reaper reports.
	children children
}

// StartServer starts the server and returns once it runs, or with an error
// whose FailureCode is 126 or 127 when the command cannot be run. From then
// on the calling process reaps every child it has, and gets the orphans of
// the run as children: as init of a PID namespace, or else as a child
// subreaper (PR_SET_CHILD_SUBREAPER), so a server that puts itself in the
// background stays below the caller. The caller must start no other child
// processes but through StartChild (child_linux.go).
func StartServer(cfg ServerConfig) (*Server, error) {
	if os.Getpid() != 1 {
		// Without it a daemon's orphans go to the host's init, out of
		// reach of Remaining, SignalAll and KillAll.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("starting the server: becoming a child subreaper: %w", err)
		}
	}
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	report, reportW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	defer report.Close()
	attr := &os.ProcAttr{
		Env:   cfg.Env,
		Files: append([]*os.File{cfg.Stdin, cfg.Stdout, cfg.Stderr, reportW}, cfg.ExtraFiles...),
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	if cfg.Foreground {
		attr.Sys.Foreground = true
		attr.Sys.Ctty = int(cfg.Stdin.Fd())
	}
	p, err := os.StartProcess(cfg.Path, cfg.Args, attr)
	reportW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	s := &Server{Pid: p.Pid, exited: make(chan Status, 1), stopped: make(chan struct{}, 1), empty: make(chan Status, 1), stdin: cfg.Stdin}
	p.Release()
	go s.reap(sigchld)

	b, err := io.ReadAll(report)
	if err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	if len(b) > 0 {
		var m Fail
		if err := json.Unmarshal(b, &m); err != nil || m.Err == nil {
			return nil, fmt.Errorf("starting the server: bad report from the exec step: %q", b)
		}
		return nil, execReportError{m}
	}
	return s, nil
}

// execReportError carries the exec step's failure, with its exit code.
type execReportError struct{ m Fail }

func (e execReportError) Error() string { return e.m.Err.Error() }

func (e execReportError) Unwrap() error { return e.m.Err }

// ReportExecError is called by the exec step when ExecServer failed: it
// writes err for StartServer to read and returns the exit status to use.
func ReportExecError(err error) int {
	code := 126
	var ee *ExecError
	if errors.As(err, &ee) {
		code = ee.Code()
	}
	b, _ := json.Marshal(Fail{Code: code, Err: NewStepError(err)})
	f := os.NewFile(ExecReportFD, "report")
	f.Write(b)
	f.Close()
	return code
}

// FailureCode is the exit status for an error of StartServer: 127 or 126
// for a command that cannot be run, 125 for anything else.
func FailureCode(err error) int {
	var r execReportError
	if errors.As(err, &r) {
		return r.m.Code
	}
	var ee *ExecError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return 125
}

// reap waits for every child of the process. It reports the server's stops
// and its end; other children (orphans adopted by init or the subreaper)
// are only reaped, until none is left after the server's end (Empty).
func (s *Server) reap(sigchld <-chan os.Signal) {
	var ended bool
	var last Status
	for range sigchld {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|syscall.WUNTRACED, nil)
			if err == syscall.EINTR {
				continue
			}
			if errors.Is(err, syscall.ECHILD) && ended {
				s.empty <- last
				return
			}
			if err != nil || pid <= 0 {
				break
			}
			if ws.Stopped() {
				if pid == s.Pid {
					select {
					case s.stopped <- struct{}{}:
					default:
					}
				}
				continue
			}
			if pid != s.Pid {
				// A program of nsbind exec (child_linux.go); an orphan of
				// the run is no one's and only counts as the last.
				s.children.reaped(pid, ws)
			}
			switch {
			case ws.Exited():
				last = Status{Code: ws.ExitStatus()}
			case ws.Signaled():
				last = Status{Signal: ws.Signal()}
			default:
				continue
			}
			if pid == s.Pid {
				ended = true
				s.exited <- last
			}
		}
	}
}

// Exited delivers the server's status once it has ended.
func (s *Server) Exited() <-chan Status { return s.exited }

// Stopped gets a value each time the server is stopped by a signal.
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// Empty delivers, once the server has ended and the calling process has no
// child left, the status of the child reaped last: after a server that
// went to the background, the end of the last process of the run.
func (s *Server) Empty() <-chan Status { return s.empty }

// Signal delivers sig to the server. SIGTSTP goes to the server's process
// group, as the terminal sends it, so a server that is a pipeline or a
// script stops whole.
func (s *Server) Signal(sig syscall.Signal) error {
	if sig == syscall.SIGTSTP {
		return ignoreGone(syscall.Kill(-s.Pid, sig))
	}
	return ignoreGone(syscall.Kill(s.Pid, sig))
}

// Remaining is the number of the run's processes still running besides
// the caller: its descendants, which are every process of the PID
// namespace when the caller is its init, and with the subreaper the orphans
// of the run too. Zombies do not count.
func (s *Server) Remaining() int { return len(descendants()) }

// SignalAll delivers sig to every process of the run but the caller.
func (s *Server) SignalAll(sig syscall.Signal) {
	if os.Getpid() == 1 {
		// kill(-1) from init of a PID namespace reaches every other
		// process of the namespace, and nothing outside it.
		syscall.Kill(-1, sig)
		return
	}
	// Without a PID namespace kill(-1) would reach every process of the
	// user: signal the descendants one by one.
	for _, pid := range descendants() {
		syscall.Kill(pid, sig)
	}
}

// HasTerminal reports whether the server's process group is the
// terminal's foreground group.
func (s *Server) HasTerminal() bool {
	pgrp, err := unix.IoctlGetInt(int(s.stdin.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == s.Pid
}

// Continue resumes a stopped server, first giving its process group the
// terminal when foreground is true.
func (s *Server) Continue(foreground bool) error {
	if foreground {
		// A server that has the terminal keeps it: tcsetpgrp from
		// what is now a background group would raise SIGTTOU in the
		// caller's group, and stop the processes of nsbind's job that
		// do not catch it.
		if !s.HasTerminal() {
			if err := unix.IoctlSetPointerInt(int(s.stdin.Fd()), unix.TIOCSPGRP, s.Pid); err != nil {
				return fmt.Errorf("giving the terminal to the server: %w", err)
			}
		}
	}
	return ignoreGone(syscall.Kill(-s.Pid, syscall.SIGCONT))
}

// KillAll kills the server and everything it started: every process of the
// PID namespace when the caller is its init, otherwise the server's process
// group and every descendant of the caller (daemons leave the group with
// setsid; as the subreaper the caller still has them below it).
func (s *Server) KillAll() {
	if os.Getpid() == 1 {
		syscall.Kill(-1, syscall.SIGKILL)
		return
	}
	syscall.Kill(-s.Pid, syscall.SIGKILL)
	s.children.killAll()
	// A process that forks while the list is read escapes one round, not
	// the next; the bound keeps a fork bomb from holding the helper.
	for range 8 {
		pids := descendants()
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// descendants lists the living processes below the calling process, from
// /proc/self/task/TID/children (a Go program's children may hang off any of
// its threads).
func descendants() []int {
	var out []int
	var walk func(tasks string, depth int)
	walk = func(tasks string, depth int) {
		entries, _ := os.ReadDir(tasks)
		for _, e := range entries {
			b, err := os.ReadFile(tasks + "/" + e.Name() + "/children")
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil || zombie(pid) {
					continue
				}
				out = append(out, pid)
				// The depth bound only guards against a /proc that
				// loops; a real tree is far shallower.
				if depth < 64 {
					walk("/proc/"+f+"/task", depth+1)
				}
			}
		}
	}
	walk("/proc/self/task", 0)
	return out
}

// zombie reports whether pid has exited and waits to be reaped (or is gone).
func zombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

func ignoreGone(err error) error {
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// ForwardedSignals are the signals the parent passes on to the server
// when nsbind gets them; the helper ignores them for itself. SIGTSTP is
// among them so that nsbind stops only once the server has stopped, and
// then with its whole job (the parent's terminal_linux.go).
func ForwardedSignals() []os.Signal {
	return []os.Signal{
		syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGTSTP,
	}
}
