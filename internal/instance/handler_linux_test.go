package instance

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// testHandler stands for the parent: its ports are a list, and its exec
// starts a real process on the passed files.
type testHandler struct {
	started time.Time
	stop    chan struct{} // closed by Stop
	stopped sync.Once

	mu      sync.Mutex
	sockets []Socket
	procs   []*testProc
}

func newTestHandler() *testHandler {
	return &testHandler{started: time.Now().Truncate(time.Second), stop: make(chan struct{})}
}

func (h *testHandler) Info() Info {
	return Info{Pid: os.Getpid(), Command: []string{"test-server", "-v"}, Started: h.started, Sockets: h.PortList()}
}

// PortAdd publishes "N" as 127.0.0.1:N → :N/tcp; "busy" fails as a busy
// host port does.
func (h *testHandler) PortAdd(specs []string) ([]Socket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var added []Socket
	for _, spec := range specs {
		if spec == "busy" {
			return nil, fmt.Errorf("binding host port 127.0.0.1:8080: %w", syscall.EADDRINUSE)
		}
		added = append(added, Socket{Host: "127.0.0.1:" + spec, Inside: 80, Proto: "tcp", Path: PathRelay, Spec: spec})
	}
	h.sockets = append(h.sockets, added...)
	return added, nil
}

func (h *testHandler) PortRm(specs []string) ([]Socket, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var removed []Socket
	for _, spec := range specs {
		i := -1
		for j, s := range h.sockets {
			if s.Spec == spec {
				i = j
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("%s is not published", spec)
		}
		removed = append(removed, h.sockets[i])
		h.sockets = append(h.sockets[:i], h.sockets[i+1:]...)
	}
	return removed, nil
}

func (h *testHandler) PortList() []Socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Socket(nil), h.sockets...)
}

func (h *testHandler) Stats() []SocketStats {
	var st []SocketStats
	for i, s := range h.PortList() {
		st = append(st, SocketStats{Socket: s, Conns: int64(i + 1), BytesIn: 100, BytesOut: 200})
	}
	return st
}

func (h *testHandler) Stop() { h.stopped.Do(func() { close(h.stop) }) }

// Exec writes a line to the passed stdout itself, then starts the command
// on the three passed files.
func (h *testHandler) Exec(req ExecRequest) (Process, error) {
	fmt.Fprintf(req.Files[1], "handler: %s\n", req.Args[0])
	cmd := exec.Command(req.Args[0], req.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = req.Files[0], req.Files[1], req.Files[2]
	cmd.Env = append(os.Environ(), req.Env...)
	cmd.Dir = req.Dir
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &testProc{cmd: cmd, waited: make(chan struct{})}
	h.mu.Lock()
	h.procs = append(h.procs, p)
	h.mu.Unlock()
	return p, nil
}

func (h *testHandler) lastProc() *testProc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.procs[len(h.procs)-1]
}

type testProc struct {
	cmd    *exec.Cmd
	status ExitStatus
	waited chan struct{} // closed when Wait has reaped it
}

func (p *testProc) Pid() int { return p.cmd.Process.Pid }

func (p *testProc) Signal(sig syscall.Signal) error {
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

func (p *testProc) Wait() ExitStatus {
	p.cmd.Wait()
	ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		p.status = ExitStatus{Signal: int(ws.Signal())}
	} else {
		p.status = ExitStatus{Code: ws.ExitStatus()}
	}
	close(p.waited)
	return p.status
}
