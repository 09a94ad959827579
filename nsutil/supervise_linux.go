package nsutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
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
	stdin   *os.File
	// children are the other programs started while the server runs
	// (StartChild, child_linux.go), which the reaper reports.
	children children
}

// StartServer starts the server and returns once it runs, or with an error
// whose FailureCode is 126 or 127 when the command cannot be run. From then on the calling
// process reaps every child it has (as init of a PID namespace it gets the
// orphans of the run too); it must start no other child processes but
// through StartChild.
func StartServer(cfg ServerConfig) (*Server, error) {
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
	s := &Server{Pid: p.Pid, exited: make(chan Status, 1), stopped: make(chan struct{}, 1), stdin: cfg.Stdin}
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
// and its end; other children (orphans adopted by init) are only reaped.
func (s *Server) reap(sigchld <-chan os.Signal) {
	for range sigchld {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG|syscall.WUNTRACED, nil)
			if err != nil || pid <= 0 {
				break
			}
			if pid != s.Pid {
				s.children.reaped(pid, ws)
				continue
			}
			switch {
			case ws.Stopped():
				select {
				case s.stopped <- struct{}{}:
				default:
				}
			case ws.Exited():
				s.exited <- Status{Code: ws.ExitStatus()}
			case ws.Signaled():
				s.exited <- Status{Signal: ws.Signal()}
			}
		}
	}
}

// Exited delivers the server's status once it has ended.
func (s *Server) Exited() <-chan Status { return s.exited }

// Stopped gets a value each time the server is stopped by a signal.
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// Signal delivers sig to the server.
func (s *Server) Signal(sig syscall.Signal) error {
	return ignoreGone(syscall.Kill(s.Pid, sig))
}

// Continue resumes a stopped server, first giving its process group the
// terminal when foreground is true.
func (s *Server) Continue(foreground bool) error {
	if foreground {
		if err := unix.IoctlSetPointerInt(int(s.stdin.Fd()), unix.TIOCSPGRP, s.Pid); err != nil {
			return fmt.Errorf("giving the terminal to the server: %w", err)
		}
	}
	return ignoreGone(syscall.Kill(-s.Pid, syscall.SIGCONT))
}

// KillAll kills the server and everything it started: every process of the
// PID namespace when the caller is its init, the server's process group
// otherwise.
func (s *Server) KillAll() {
	if os.Getpid() == 1 {
		syscall.Kill(-1, syscall.SIGKILL)
		return
	}
	syscall.Kill(-s.Pid, syscall.SIGKILL)
	s.children.killAll()
}

func ignoreGone(err error) error {
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// ForwardedSignals are the signals the parent passes on to the server
// when nsbind gets them; the helper ignores them for itself.
func ForwardedSignals() []os.Signal {
	return []os.Signal{
		syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH,
	}
}
