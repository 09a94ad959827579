package nsutil

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// ChildConfig says how to start another program through the exec step
// while the server runs (nsbind exec): the same exec step, so the same
// uid, capabilities and environment rules as the server.
type ChildConfig struct {
	// Path, Args and Env run the exec step; Dir, if set, is the working
	// directory.
	Path string
	Args []string
	Env  []string
	Dir  string
	// Stdin, Stdout and Stderr are the child's standard descriptors.
	Stdin, Stdout, Stderr *os.File
	// TTY makes Stdin the child's controlling terminal, in a session of
	// its own (setsid, TIOCSCTTY), as a terminal emulator does for its
	// shell; otherwise the child gets a process group of its own, so a
	// signal to the server's group does not reach it.
	TTY bool
}

// Child is a program StartChild started.
type Child struct {
	// Pid is the child's pid in the caller's PID namespace.
	Pid    int
	exited chan Status
}

// children are the programs started beside the server, by pid, until
// the reaper has reaped them.
type children struct {
	mu sync.Mutex
	m  map[int]chan Status
}

// reaped reports the end of pid if it is one of the children.
func (c *children) reaped(pid int, ws syscall.WaitStatus) {
	var st Status
	switch {
	case ws.Exited():
		st = Status{Code: ws.ExitStatus()}
	case ws.Signaled():
		st = Status{Signal: ws.Signal()}
	default:
		return // stopped: a child's job control is its own
	}
	c.mu.Lock()
	ch := c.m[pid]
	delete(c.m, pid)
	c.mu.Unlock()
	if ch != nil {
		ch <- st // buffered: one status per child
	}
}

// killAll kills every child's process group.
func (c *children) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pid := range c.m {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// StartChild starts a program beside the server through the exec step and
// returns once it runs, or with an error whose FailureCode is 126 or 127
// when the command cannot be run. The reaper StartServer started reports
// its end (Exited). It may be called from any goroutine.
func (s *Server) StartChild(cfg ChildConfig) (*Child, error) {
	report, reportW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting the command: %w", err)
	}
	defer report.Close()
	attr := &os.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []*os.File{cfg.Stdin, cfg.Stdout, cfg.Stderr, reportW},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	if cfg.TTY {
		attr.Sys = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	c := &Child{exited: make(chan Status, 1)}
	// The reaper reaps every child of the process: the child is in the
	// table before the reaper can look it up, since the reaper takes the
	// lock after its wait and before its lookup.
	s.children.mu.Lock()
	p, err := os.StartProcess(cfg.Path, cfg.Args, attr)
	if err == nil {
		if s.children.m == nil {
			s.children.m = make(map[int]chan Status)
		}
		c.Pid = p.Pid
		s.children.m[p.Pid] = c.exited
		p.Release()
	}
	s.children.mu.Unlock()
	reportW.Close()
	if err != nil {
		return nil, fmt.Errorf("starting the command: %w", err)
	}
	b, err := io.ReadAll(report)
	if err != nil {
		return nil, fmt.Errorf("starting the command: %w", err)
	}
	if len(b) > 0 {
		// The exec step has failed and exits; the reaper reaps it.
		var m Fail
		if err := json.Unmarshal(b, &m); err != nil || m.Err == nil {
			return nil, fmt.Errorf("starting the command: bad report from the exec step: %q", b)
		}
		return nil, execReportError{m}
	}
	return c, nil
}

// Exited delivers the child's status once it has ended.
func (c *Child) Exited() <-chan Status { return c.exited }

// Signal delivers sig to the child.
func (c *Child) Signal(sig syscall.Signal) error {
	return ignoreGone(syscall.Kill(c.Pid, sig))
}
