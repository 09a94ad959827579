package instance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Server is the control socket of one run, in its nsbind parent.
type Server struct {
	name string
	path string
	dir  string
	euid int
	h    Handler
	ln   *net.UnixListener

	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	wg        sync.WaitGroup // connection goroutines and exec waiters

	mu    sync.Mutex
	conns map[*conn]struct{}
}

// Listen takes name (empty: a default name, "nsbind-" and 4 hex digits, not
// in use) in the user's directory and returns the Server of h on it. A name
// a live run holds fails with *NameTakenError; the socket of a dead run (it
// refuses connections) is removed and the name taken.
func Listen(name string, h Handler) (*Server, error) { return listenIn(defaultDirs(), name, h) }

func listenIn(d dirs, name string, h Handler) (*Server, error) {
	if name == "" {
		// 65536 names: a few draws find a free one unless thousands run.
		var err error
		for range 16 {
			var s *Server
			if s, err = listenName(d, randomName(), h); !errors.As(err, new(*NameTakenError)) {
				return s, err
			}
		}
		return nil, fmt.Errorf("choosing a free instance name: %w", err)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	return listenName(d, name, h)
}

func listenName(d dirs, name string, h Handler) (*Server, error) {
	file := name + ".sock"
	// Each retry follows a change another process made: a stale socket
	// removed, or the directory removed by a run that ended.
	for range 4 {
		dir, err := d.ensure()
		if err != nil {
			return nil, err
		}
		path := filepath.Join(dir.Name(), file)
		ln, state, pid, err := bindName(dir, path, file)
		dir.Close()
		switch {
		case err != nil:
			return nil, err
		case ln != nil:
			return &Server{name: name, path: path, dir: filepath.Dir(path), euid: d.euid, h: h, ln: ln,
				closing: make(chan struct{}), conns: map[*conn]struct{}{}}, nil
		case state == stateLive:
			return nil, &NameTakenError{Name: name, Pid: pid}
		}
	}
	return nil, fmt.Errorf("taking the instance name %s: the directory keeps changing", name)
}

// bindName binds path under the directory's lock. When the name is in use
// it says by what: a live server (and its pid), or a stale socket, which
// it removes so that the caller's next try can bind.
func bindName(dir *os.File, path, file string) (*net.UnixListener, sockState, int, error) {
	if err := lock(dir, true); err != nil {
		return nil, 0, 0, fmt.Errorf("locking %s: %w", dir.Name(), err)
	}
	defer unlock(dir)
	// bind(2) of a unix socket creates the file or fails with EADDRINUSE:
	// atomic, unlike a check then a create.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err == nil {
		return ln, 0, 0, nil
	}
	if errors.Is(err, unix.ENOENT) {
		return nil, stateGone, 0, nil // the directory was removed since ensure
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		return nil, 0, 0, fmt.Errorf("creating the control socket %s: %w", path, err)
	}
	state, pid := probe(path)
	if state == stateStale {
		if err := removeSocket(dir, file); err != nil {
			return nil, 0, 0, fmt.Errorf("removing the stale control socket %s: %w", path, err)
		}
	}
	return nil, state, pid, nil
}

// Name returns the instance's name.
func (s *Server) Name() string { return s.name }

// Path returns the control socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers connections until ctx is done or Close is called, then
// closes every connection, kills the processes exec started that still
// run, and returns after every goroutine it started has ended. It returns
// nil then, or the error that stopped accepting.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	for {
		uc, err := s.ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.closing:
				err = nil
			default:
				err = fmt.Errorf("accepting on %s: %w", s.path, err)
				s.Close()
			}
			s.wg.Wait()
			return err
		}
		c := newConn(uc)
		if !s.track(c) {
			uc.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// Close removes the socket (so the name is free), stops Serve and closes
// every connection. It may be called more than once, from any goroutine.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		// Go's listener unlinks its path before it closes the socket: no
		// moment where the file refuses and a cleaner takes it for stale.
		err = s.ln.Close()
		// The directory goes with the last instance; a run binding in it
		// meanwhile gets ENOENT and makes it again.
		unix.Rmdir(s.dir)
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return err
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closing:
		return false
	default:
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// allowed says whether a peer of uid may use the instance: the same user,
// or root. The directory's mode already keeps others from the socket;
// this holds even where they reach it (a socket passed on, a directory
// opened up).
func (s *Server) allowed(uid uint32) bool { return int(uid) == s.euid || uid == 0 }

// serveConn answers one connection's requests, in order.
func (s *Server) serveConn(c *conn) {
	defer s.wg.Done()
	defer s.untrack(c)
	cred, err := peerCred(c.c)
	if err != nil {
		c.send(msgError, remoteError(err))
		return
	}
	if !s.allowed(cred.Uid) {
		c.send(msgError, &RemoteError{Errno: unix.EACCES,
			Text: fmt.Sprintf("uid %d may not use the instance %s of uid %d", cred.Uid, s.name, s.euid)})
		return
	}
	if c.send(msgHello, hello{Version: protocolVersion, Name: s.name, Pid: os.Getpid()}) != nil {
		return
	}
	for {
		env, files, err := c.recv()
		if err != nil {
			closeFiles(files)
			return
		}
		if env.Type == msgExec {
			s.exec(c, env.Data, files)
			return
		}
		closeFiles(files)
		if err := s.answer(c, env); err != nil {
			return
		}
	}
}

// answer answers one request other than exec.
func (s *Server) answer(c *conn, env envelope) error {
	switch env.Type {
	case msgInfo:
		info := s.h.Info()
		info.Name, info.UID = s.name, s.euid
		return c.send(msgInfo, info)
	case msgPortAdd, msgPortRm:
		var req portSpecs
		if err := json.Unmarshal(env.Data, &req); err != nil {
			return c.send(msgError, remoteError(fmt.Errorf("reading %s: %w", env.Type, err)))
		}
		do := s.h.PortAdd
		if env.Type == msgPortRm {
			do = s.h.PortRm
		}
		socks, err := do(req.Specs)
		if err != nil {
			return c.send(msgError, remoteError(err))
		}
		return c.send(msgPorts, portsMsg{Sockets: socks})
	case msgPortLs:
		return c.send(msgPorts, portsMsg{Sockets: s.h.PortList()})
	case msgStats:
		return c.send(msgStats, statsMsg{Sockets: s.h.Stats()})
	case msgStop:
		// Answer first: the run may end before Stop returns. The client
		// then waits for the connection to close, which is the end of
		// the run's Serve.
		err := c.send(msgOK, nil)
		s.h.Stop()
		return err
	default:
		return c.send(msgError, &RemoteError{Text: fmt.Sprintf("unknown request %q", env.Type), Errno: unix.EINVAL})
	}
}

// exec runs one exec request; the connection is the process's until it
// ends. The client's signal frames are delivered to it. A client that
// hangs up sends it SIGHUP, as a terminal's hangup would; when the server
// closes, it is killed.
func (s *Server) exec(c *conn, data json.RawMessage, files []*os.File) {
	defer func() { closeFiles(files) }()
	var req ExecRequest
	if err := json.Unmarshal(data, &req); err != nil {
		c.send(msgError, remoteError(fmt.Errorf("reading exec: %w", err)))
		return
	}
	if len(files) != 3 {
		c.send(msgError, &RemoteError{Text: fmt.Sprintf("exec needs stdin, stdout and stderr, got %d files", len(files)), Errno: unix.EINVAL})
		return
	}
	if len(req.Args) == 0 {
		c.send(msgError, &RemoteError{Text: "exec needs a command", Errno: unix.EINVAL})
		return
	}
	req.Files = files
	p, err := s.h.Exec(req)
	closeFiles(files)
	files = nil
	if err != nil {
		c.send(msgError, remoteError(err))
		return
	}
	// exec-started goes before the waiter can send exit.
	sent := c.send(msgExecStarted, execStarted{Pid: p.Pid()})
	exited := make(chan struct{})
	s.wg.Add(1)
	go s.waitExec(c, p, exited)
	if sent == nil {
		s.execSignals(c, p, exited)
	} else {
		p.Signal(syscall.SIGHUP)
	}
	select {
	case <-exited:
	case <-s.closing:
		p.Signal(syscall.SIGKILL)
		<-exited
	}
}

// execSignals delivers the client's signal frames to p until the client
// hangs up or p has exited.
func (s *Server) execSignals(c *conn, p Process, exited <-chan struct{}) {
	for {
		env, files, err := c.recv()
		closeFiles(files)
		if err != nil {
			select {
			case <-exited:
			case <-s.closing:
			default:
				p.Signal(syscall.SIGHUP)
			}
			return
		}
		if env.Type != msgSignal {
			continue // nothing else is asked while a process runs
		}
		var m signalMsg
		if json.Unmarshal(env.Data, &m) == nil && m.Signal > 0 && m.Signal < 65 {
			p.Signal(syscall.Signal(m.Signal))
		}
	}
}

// waitExec waits for p, sends its exit status, and wakes execSignals.
func (s *Server) waitExec(c *conn, p Process, exited chan<- struct{}) {
	defer s.wg.Done()
	st := p.Wait()
	c.send(msgExit, st)
	close(exited)
	c.c.SetReadDeadline(time.Now())
}
