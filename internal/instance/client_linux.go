package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// dialTimeout bounds connecting and the hello: a live run answers at once,
// whatever it is doing, since every connection has its own goroutine.
const dialTimeout = 2 * time.Second

// Client is a connection to one instance's control socket. Its methods
// may be called from any goroutine; they take turns on the connection.
// Exec uses a connection of its own.
type Client struct {
	path  string
	hello hello
	cred  unix.Ucred // the server's, from SO_PEERCRED
	mu    sync.Mutex
	c     *conn
}

// Dial connects to the instance name of the user; root also finds the
// instances of other users (when two users both have one of that name,
// the error names their uids). A name no live run holds fails with an
// error wrapping ErrNoInstance; a stale socket found on the way is removed.
func Dial(name string) (*Client, error) { return dialIn(defaultDirs(), name) }

func dialIn(d dirs, name string) (*Client, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	file := name + ".sock"
	var found []userDir
	for _, ud := range d.search() {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(ud.path, file), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			found = append(found, ud)
		}
	}
	// Only the user's own instance when it has one: root's own comes
	// first, as "nsbind stop web" of root means root's web.
	if len(found) > 1 && found[0].uid == d.euid {
		found = found[:1]
	}
	if len(found) > 1 {
		uids := make([]string, len(found))
		for i, ud := range found {
			uids[i] = fmt.Sprint(ud.uid)
		}
		return nil, fmt.Errorf("instances named %s run as several users (uid %s)", name, strings.Join(uids, ", "))
	}
	if len(found) == 1 {
		path := filepath.Join(found[0].path, file)
		c, err := dialPath(path)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("connecting to the instance %s: %w", name, err)
		}
		if errors.Is(err, unix.ECONNREFUSED) {
			cleanStale(found[0], file)
		}
	}
	return nil, fmt.Errorf("no instance named %s: %w", name, ErrNoInstance)
}

// dialPath connects to the socket at path and reads the server's hello.
func dialPath(path string) (*Client, error) {
	nc, err := net.DialTimeout("unix", path, dialTimeout)
	if err != nil {
		return nil, err
	}
	uc := nc.(*net.UnixConn)
	cred, err := peerCred(uc)
	if err != nil {
		uc.Close()
		return nil, err
	}
	c := &Client{path: path, cred: *cred, c: newConn(uc)}
	uc.SetDeadline(time.Now().Add(dialTimeout))
	if _, err := c.c.expect(msgHello, &c.hello); err != nil {
		uc.Close()
		return nil, err
	}
	uc.SetDeadline(time.Time{})
	if c.hello.Version != protocolVersion {
		uc.Close()
		return nil, fmt.Errorf("the instance %s speaks protocol %d, this nsbind %d: use the nsbind that started it",
			c.hello.Name, c.hello.Version, protocolVersion)
	}
	return c, nil
}

// sockState is what is at an instance's socket path.
type sockState int

const (
	stateGone  sockState = iota + 1 // nothing
	stateStale                      // a socket nobody listens on: its run died
	stateLive                       // a listening server
)

// probe says what is at path and, when it is live, the pid of the process
// that listens (from SO_PEERCRED: it does not depend on the server
// answering).
func probe(path string) (sockState, int) {
	nc, err := net.DialTimeout("unix", path, dialTimeout)
	switch {
	case err == nil:
		defer nc.Close()
		if cred, err := peerCred(nc.(*net.UnixConn)); err == nil {
			return stateLive, int(cred.Pid)
		}
		return stateLive, 0
	case errors.Is(err, unix.ECONNREFUSED):
		return stateStale, 0
	case errors.Is(err, unix.ENOENT):
		return stateGone, 0
	default:
		// EAGAIN (a full backlog) and anything else: something is there;
		// never remove what may be alive.
		return stateLive, 0
	}
}

// cleanStale removes the socket file of ud if it still refuses, under the
// directory's lock (not waiting for it: another process holding it is
// cleaning or binding there itself).
func cleanStale(ud userDir, file string) {
	dir, err := openDir(ud.path, ud.uid)
	if err != nil {
		return
	}
	defer dir.Close()
	if lock(dir, false) != nil {
		return
	}
	defer unlock(dir)
	if state, _ := probe(filepath.Join(ud.path, file)); state == stateStale {
		removeSocket(dir, file)
	}
}

// Name returns the instance's name.
func (c *Client) Name() string { return c.hello.Name }

// Pid returns the pid of the instance's nsbind parent.
func (c *Client) Pid() int { return int(c.cred.Pid) }

// UID returns the uid the instance runs as.
func (c *Client) UID() int { return int(c.cred.Uid) }

// Close closes the connection.
func (c *Client) Close() error { return c.c.Close() }

// call sends one request and reads its answer of type want into out,
// within ctx.
func (c *Client) call(ctx context.Context, t msgType, req any, want msgType, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer bindContext(ctx, c.c.c)()
	if err := c.c.send(t, req); err != nil {
		return ctxErr(ctx, err)
	}
	_, err := c.c.expect(want, out)
	return ctxErr(ctx, err)
}

// bindContext makes ctx's deadline and cancellation the connection's
// deadline until the returned function is called. The connection's
// deadline passes only once ctx is done: set to ctx's deadline itself, a
// read could time out before ctx's timer has fired, and ctxErr would not
// know the timeout for ctx's (nsbind stop printed "read unix ...: i/o
// timeout" then, instead of saying the instance did not end in time).
func bindContext(ctx context.Context, uc *net.UnixConn) func() {
	stop := context.AfterFunc(ctx, func() { uc.SetDeadline(time.Unix(1, 0)) })
	return func() {
		stop()
		uc.SetDeadline(time.Time{})
	}
}

// ctxErr prefers ctx's error to the timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Info returns the instance's description; UID is the server's, as the
// kernel says.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var info Info
	err := c.call(ctx, msgInfo, nil, msgInfo, &info)
	info.UID = int(c.cred.Uid)
	return info, err
}

// PortAdd publishes specs (the -p grammar) and returns the sockets added.
func (c *Client) PortAdd(ctx context.Context, specs []string) ([]Socket, error) {
	var m portsMsg
	err := c.call(ctx, msgPortAdd, portSpecs{Specs: specs}, msgPorts, &m)
	return m.Sockets, err
}

// PortRm unpublishes specs and returns the sockets removed.
func (c *Client) PortRm(ctx context.Context, specs []string) ([]Socket, error) {
	var m portsMsg
	err := c.call(ctx, msgPortRm, portSpecs{Specs: specs}, msgPorts, &m)
	return m.Sockets, err
}

// PortList returns every published socket.
func (c *Client) PortList(ctx context.Context) ([]Socket, error) {
	var m portsMsg
	err := c.call(ctx, msgPortLs, nil, msgPorts, &m)
	return m.Sockets, err
}

// Stats returns the counters of every published socket.
func (c *Client) Stats(ctx context.Context) ([]SocketStats, error) {
	var m statsMsg
	err := c.call(ctx, msgStats, nil, msgStats, &m)
	return m.Sockets, err
}

// Stop asks the instance to end, as SIGTERM to its nsbind, and waits until
// it has (its server closes the connection) or ctx is done.
func (c *Client) Stop(ctx context.Context) error {
	if err := c.call(ctx, msgStop, nil, msgOK, nil); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	defer bindContext(ctx, c.c.c)()
	for {
		_, files, err := c.c.recv()
		closeFiles(files)
		if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
			return nil
		}
		if err != nil {
			return ctxErr(ctx, fmt.Errorf("waiting for the instance to end: %w", err))
		}
	}
}

// Exec is a process Client.Exec started inside the instance.
type Exec struct {
	// Pid is the process's pid inside the instance.
	Pid int
	c   *conn
}

// Exec starts req inside the instance, on a connection of its own, and
// returns once it runs. req.Files must be the process's stdin, stdout and
// stderr (with TTY, the terminal three times); the caller keeps its own
// copies, which it may close at once.
func (c *Client) Exec(ctx context.Context, req ExecRequest) (*Exec, error) {
	if len(req.Files) != 3 {
		return nil, fmt.Errorf("exec: %d files, want stdin, stdout and stderr", len(req.Files))
	}
	ec, err := dialPath(c.path)
	if err != nil {
		return nil, fmt.Errorf("connecting to the instance %s: %w", c.hello.Name, err)
	}
	release := bindContext(ctx, ec.c.c)
	if err := ec.c.send(msgExec, req, req.Files...); err != nil {
		release()
		ec.Close()
		return nil, ctxErr(ctx, err)
	}
	var started execStarted
	_, err = ec.c.expect(msgExecStarted, &started)
	release()
	if err != nil {
		ec.Close()
		return nil, ctxErr(ctx, err)
	}
	return &Exec{Pid: started.Pid, c: ec.c}, nil
}

// Signal delivers sig to the process.
func (e *Exec) Signal(sig syscall.Signal) error {
	return e.c.send(msgSignal, signalMsg{Signal: int(sig)})
}

// Wait waits for the process to end and closes the connection. Call it
// once.
func (e *Exec) Wait() (ExitStatus, error) {
	defer e.c.Close()
	var st ExitStatus
	if _, err := e.c.expect(msgExit, &st); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("the instance ended before the process's exit status came")
		}
		return ExitStatus{}, err
	}
	return st, nil
}

// Close hangs up: the process gets SIGHUP. Wait need not be called then.
func (e *Exec) Close() error { return e.c.Close() }

// InstanceInfo is one instance as List found it.
type InstanceInfo struct {
	Info
	// Socket is the control socket's path.
	Socket string `json:"socket"`
	// Error says why a live instance did not describe itself; Info then
	// has only Name, Pid and UID.
	Error string `json:"error,omitempty"`
}

// List returns the running instances of the user (root: of every user),
// sorted by uid and name, and removes the sockets of dead runs it finds.
// An instance that does not answer in time is listed with Error.
func List() ([]InstanceInfo, error) { return listIn(defaultDirs()) }

func listIn(d dirs) ([]InstanceInfo, error) {
	var out []InstanceInfo
	for i, ud := range d.search() {
		dir, err := openDir(ud.path, ud.uid)
		if err != nil {
			// The user's own directory: missing is no instances, anything
			// else the user should hear about. Another user's that fails
			// the checks is not trusted, and skipped.
			if i == 0 && !errors.Is(err, unix.ENOENT) {
				return out, err
			}
			continue
		}
		entries, err := dir.ReadDir(-1)
		dir.Close()
		if err != nil && i == 0 {
			return out, fmt.Errorf("reading %s: %w", ud.path, err)
		}
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".sock")
			if !ok || !ValidName(name) || e.Type() != os.ModeSocket {
				continue
			}
			if ii, ok := describe(ud, name); ok {
				out = append(out, ii)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].UID != out[j].UID {
			return out[i].UID < out[j].UID
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// describe asks the instance at ud/name.sock for its Info; false when
// there is none (a stale socket, which it removes).
func describe(ud userDir, name string) (InstanceInfo, bool) {
	path := filepath.Join(ud.path, name+".sock")
	c, err := dialPath(path)
	if err != nil {
		if errors.Is(err, unix.ECONNREFUSED) {
			cleanStale(ud, name+".sock")
			return InstanceInfo{}, false
		}
		if errors.Is(err, unix.ENOENT) {
			return InstanceInfo{}, false
		}
		return InstanceInfo{Info: Info{Name: name, UID: ud.uid}, Socket: path, Error: err.Error()}, true
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	info, err := c.Info(ctx)
	ii := InstanceInfo{Info: info, Socket: path}
	if err != nil {
		ii.Info = Info{Name: name, Pid: c.Pid(), UID: c.UID()}
		ii.Error = err.Error()
	}
	return ii, true
}
