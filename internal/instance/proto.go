package instance

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// The protocol of the control socket. A connection carries frames: a 4-byte
// big-endian length, then that many bytes of JSON, an envelope {"t": type,
// "d": payload}. Files travel with SCM_RIGHTS on the frame they belong to.
// One request is answered before the next is read; a connection serves one
// request at a time, in order.
//
//	type          sender  payload          files                    answer / note
//	------------  ------  ---------------  -----------------------  ------------------------------------
//	hello         server  hello            -                        first frame on every connection
//	error         server  RemoteError      -                        instead of hello: the peer is refused,
//	                                                                then the server closes; instead of an
//	                                                                answer: the request failed
//	info          client  -                -                        info (Info)
//	port-add      client  portSpecs        -                        ports (the sockets added) | error
//	port-rm       client  portSpecs        -                        ports (the sockets removed) | error
//	port-ls       client  -                -                        ports (every published socket)
//	exec          client  ExecRequest      stdin, stdout, stderr    exec-started, later exit | error
//	signal        client  signalMsg        -                        none; only between exec-started and exit
//	exec-started  server  execStarted      -                        the process runs
//	exit          server  ExitStatus       -                        the process ended; the server closes
//	                                                                the connection after it
//	stats         client  -                -                        stats
//	stop          client  -                -                        ok; the server closes the connection
//	                                                                when the run has ended
//	info, ports,  server  Info, portsMsg,  -                        answers
//	stats, ok             statsMsg, -
//
// A frame of an unexpected type is an error on both sides: the receiver
// names what it got and what it wanted (expect), and drops the files.

// msgType names a frame's payload.
type msgType string

const (
	msgHello       msgType = "hello"
	msgError       msgType = "error"
	msgInfo        msgType = "info"
	msgPortAdd     msgType = "port-add"
	msgPortRm      msgType = "port-rm"
	msgPortLs      msgType = "port-ls"
	msgPorts       msgType = "ports"
	msgExec        msgType = "exec"
	msgSignal      msgType = "signal"
	msgExecStarted msgType = "exec-started"
	msgExit        msgType = "exit"
	msgStats       msgType = "stats"
	msgStop        msgType = "stop"
	msgOK          msgType = "ok"
)

// protocolVersion is sent in hello. A client refuses a server of another
// version, so an old running nsbind and a newer CLI fail with one clear
// line rather than a misread message.
const protocolVersion = 1

// envelope is one frame.
type envelope struct {
	Type msgType         `json:"t"`
	Data json.RawMessage `json:"d,omitempty"`
}

type hello struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	Pid     int    `json:"pid"`
}

type portSpecs struct {
	Specs []string `json:"specs"`
}

type portsMsg struct {
	Sockets []Socket `json:"sockets"`
}

type statsMsg struct {
	Sockets []SocketStats `json:"sockets"`
}

type signalMsg struct {
	Signal int `json:"sig"`
}

type execStarted struct {
	Pid int `json:"pid"`
}

// Info describes a running instance, as `nsbind ps` shows it.
type Info struct {
	Name string `json:"name"`
	// Pid is the pid of the nsbind parent of the run, on the host.
	Pid int `json:"pid"`
	// UID is the user the instance runs as. The client fills it in from
	// the server's SO_PEERCRED, not from what the server says.
	UID     int       `json:"uid"`
	Command []string  `json:"command"`
	Started time.Time `json:"started"`
	Sockets []Socket  `json:"sockets"`
}

// Paths a published socket's connections take (Socket.Path).
const (
	PathNative = "native" // the server accepts on the host socket itself (--direct, --socket-activation)
	PathRelay  = "relay"  // the helper accepts and relays to the server
)

// Socket is one published host socket.
type Socket struct {
	// Host is the host address and port, e.g. "127.0.0.1:8080" or
	// "[::1]:8080".
	Host string `json:"host"`
	// Inside is the port the server binds inside.
	Inside uint16 `json:"inside"`
	Proto  string `json:"proto"` // "tcp" or "udp"
	Path   string `json:"path"`  // PathNative or PathRelay
	// Spec is the -p argument the socket came from.
	Spec string `json:"spec,omitempty"`
}

// SocketStats are the counters of one published socket (those of
// --stats).
type SocketStats struct {
	Socket
	Conns     int64 `json:"conns"`
	Active    int64 `json:"active"`
	Failed    int64 `json:"failed"`
	BytesIn   int64 `json:"bytes_in"`
	BytesOut  int64 `json:"bytes_out"`
	Datagrams int64 `json:"datagrams"`
}

// ExecRequest asks for a command to run inside the instance.
type ExecRequest struct {
	Args []string `json:"args"`
	// Env is added to the environment the server got; nil adds nothing.
	Env []string `json:"env,omitempty"`
	// Dir is the working directory; empty is the server's.
	Dir string `json:"dir,omitempty"`
	// TTY says Files are a terminal (all three the same one, e.g. a pty's
	// slave the client made): the process gets it as its controlling
	// terminal, in a session of its own.
	TTY bool `json:"tty,omitempty"`
	// Files are the process's stdin, stdout and stderr, passed with
	// SCM_RIGHTS, never in the JSON. On the server they belong to the
	// server, which closes them when Handler.Exec returns: a Handler that
	// hands them on (to the helper) sends them before it returns.
	Files []*os.File `json:"-"`
}

// ExitStatus is how an exec'd process ended: Code when it exited, Signal
// (non-zero) when a signal killed it.
type ExitStatus struct {
	Code   int `json:"code"`
	Signal int `json:"sig,omitempty"`
}

// RemoteError is an error the server answered. Errno is the errno at its
// root (zero when none), so errors.Is(err, syscall.EADDRINUSE) holds on the
// client as it did in the parent and the CLI can give the same remedy.
type RemoteError struct {
	Text  string        `json:"text"`
	Errno syscall.Errno `json:"errno,omitempty"`
}

func (e *RemoteError) Error() string { return e.Text }

// Unwrap returns the errno, if any.
func (e *RemoteError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// remoteError makes the answer for err, keeping its errno.
func remoteError(err error) *RemoteError {
	re := &RemoteError{Text: err.Error()}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		re.Errno = errno
	}
	return re
}

// NameTakenError says a live instance holds the name.
type NameTakenError struct {
	Name string
	Pid  int // 0 when the holder did not say
}

func (e *NameTakenError) Error() string {
	if e.Pid == 0 {
		return fmt.Sprintf("an instance named %s is running", e.Name)
	}
	return fmt.Sprintf("an instance named %s is running (pid %d)", e.Name, e.Pid)
}

// ErrNoInstance is wrapped by Dial when no instance has the name.
var ErrNoInstance = errors.New("no such instance")

// Handler is what the nsbind parent of a run implements for its Server.
// Every method may be called from several connection goroutines at once.
type Handler interface {
	// Info describes the run (Name and UID are filled in by the server).
	Info() Info
	// PortAdd publishes specs (the -p grammar) with the same checks as at
	// start; on error nothing changed. It returns the sockets added.
	PortAdd(specs []string) ([]Socket, error)
	// PortRm unpublishes specs and returns the sockets removed;
	// connections in flight finish.
	PortRm(specs []string) ([]Socket, error)
	// PortList returns every published socket.
	PortList() []Socket
	// Exec starts req inside the instance and returns once it runs.
	Exec(req ExecRequest) (Process, error)
	// Stats returns the counters of every published socket.
	Stats() []SocketStats
	// Stop ends the run as SIGTERM to nsbind would. It returns at once;
	// the run ends later, and the Server's context with it.
	Stop()
}

// Process is a command Handler.Exec started.
type Process interface {
	// Pid is the process's pid, as the instance sees it.
	Pid() int
	// Signal delivers sig to the process.
	Signal(sig syscall.Signal) error
	// Wait waits for the process to end. It must return when the run ends,
	// even if the process outlives the helper's report (the PID namespace
	// kills it then).
	Wait() ExitStatus
}
