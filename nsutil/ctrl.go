package nsutil

// The control protocol between nsbind's processes: every message any of
// them sends another, in one place. The parent (nsbind run, on the host)
// starts the helper with argv[0] RoleInit and its end of a SOCK_SEQPACKET
// pair as descriptor CtrlFD; the published host sockets follow from
// FirstFD on. Each message is one datagram: {"t": TYPE, "p": PAYLOAD} in
// JSON, with descriptors alongside (SCM_RIGHTS) where the table says so.
//
//	when                           from    to      type        payload      descriptors
//	-----------------------------  ------  ------  ----------  -----------  ----------------------
//	first, before anything else    parent  helper  config      ConfigPart   -   (repeated until Last: a HelperConfig)
//	--net=veth, the pair is made   parent  helper  veth-ready  VethReady    -
//	setup failed (then it exits)   helper  parent  fail        Fail         -
//	the server runs                helper  parent  ready       Ready        -
//	nsbind got a signal            parent  helper  signal      Signal       -
//	the server was stopped         helper  parent  stopped     Stopped      -
//	it exited 0, others run on     helper  parent  daemonized  Daemonized   -
//	nsbind was continued           parent  helper  continue    Continue     -
//	outbound: the pool runs low    helper  parent  want        WantSockets  -
//	answer to want                 parent  helper  sockets     Sockets      up to MaxFiles unconnected host sockets
//	native: relay on the host      helper  parent  relay       Relay        the host socket to relay
//	native: the server binds it    helper  parent  unrelay     Unrelay      -
//	answer to unrelay              parent  helper  unrelayed   Unrelayed    -
//	the server ended               helper  parent  stats       Stats        -   (one per StatsPerMsg sockets)
//	the server ended, last         helper  parent  exit        Exit         -
//	nsbind doctor's probe is done  probe   doctor  probe       ProbeReport  -
//
// Requests of nsbind's instance commands (nsbind port, stats, exec; the
// parent serves them, internal/instance) that the helper answers, each
// keyed by an ID the parent chooses, so several may be under way at once:
//
//	when                           from    to      type          payload      descriptors
//	-----------------------------  ------  ------  ------------  -----------  ----------------------
//	nsbind port add                parent  helper  port-open     PortOpen     its host sockets, in order (up to MaxFiles)
//	nsbind port rm                 parent  helper  port-close    PortClose    -
//	answer to port-open, -close    helper  parent  port-done     PortDone     -
//	nsbind stats, ps               parent  helper  stats-ask     StatsAsk     -
//	answer to stats-ask            helper  parent  stats-now     StatsNow     -   (one per StatsPerMsg sockets, Last on the last)
//	nsbind exec                    parent  helper  exec          ExecStart    the command's stdin, stdout, stderr
//	the command runs, or cannot    helper  parent  exec-started  ExecStarted  -
//	nsbind exec passes a signal    parent  helper  exec-signal   ExecSignal   -
//	the command ended              helper  parent  exec-exit     ExecExit     -
//
// The exec step (argv[0] RoleExec) reports a failure to run the command
// to the helper as one Fail, in JSON, on a pipe (ExecReportFD) that a
// successful exec closes with nothing written.
//
// A receiver that expects one type (Expect) rejects any other with an
// error; a type not in the table is an error too. An error that crosses
// the boundary is a *StepError: the step that failed and its errno, so the
// parent can describe it (the cause and the fix) with the host's facts.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The roles: nsbind re-executes itself (/proc/self/exe) with one of these
// as argv[0], which only nsbind sets, and main dispatches on it. Nothing in
// the environment chooses a role.
const (
	RoleInit  = "nsbind-init"  // the helper, inside the namespaces
	RoleExec  = "nsbind-exec"  // the exec step that becomes the server
	RoleProbe = "nsbind-probe" // nsbind doctor's probe
)

// Descriptors of the helper: the control channel, then the host sockets.
const (
	CtrlFD  = 3
	FirstFD = 4
)

// MsgType names a message on the control channel.
type MsgType string

// The message types of the table above.
const (
	MsgConfig    MsgType = "config"
	MsgVethReady MsgType = "veth-ready"
	MsgFail      MsgType = "fail"
	MsgReady     MsgType = "ready"
	MsgSignal    MsgType = "signal"
	MsgStopped   MsgType = "stopped"
	MsgDaemon    MsgType = "daemonized"
	MsgContinue  MsgType = "continue"
	MsgWant      MsgType = "want"
	MsgSockets   MsgType = "sockets"
	MsgRelay     MsgType = "relay"
	MsgUnrelay   MsgType = "unrelay"
	MsgUnrelayed MsgType = "unrelayed"
	MsgStats     MsgType = "stats"
	MsgExit      MsgType = "exit"
	MsgProbe     MsgType = "probe"

	MsgPortOpen    MsgType = "port-open"
	MsgPortClose   MsgType = "port-close"
	MsgPortDone    MsgType = "port-done"
	MsgStatsAsk    MsgType = "stats-ask"
	MsgStatsNow    MsgType = "stats-now"
	MsgExecStart   MsgType = "exec"
	MsgExecStarted MsgType = "exec-started"
	MsgExecSignal  MsgType = "exec-signal"
	MsgExecExit    MsgType = "exec-exit"
)

// Payload is the body of one message; its type says which message it is.
type Payload interface{ MsgType() MsgType }

// newPayload decodes the payload of a message of type t.
func newPayload(t MsgType, raw json.RawMessage) (Payload, error) {
	switch t {
	case MsgConfig:
		return decode[ConfigPart](raw)
	case MsgVethReady:
		return decode[VethReady](raw)
	case MsgFail:
		return decode[Fail](raw)
	case MsgReady:
		return decode[Ready](raw)
	case MsgSignal:
		return decode[Signal](raw)
	case MsgStopped:
		return decode[Stopped](raw)
	case MsgDaemon:
		return decode[Daemonized](raw)
	case MsgContinue:
		return decode[Continue](raw)
	case MsgWant:
		return decode[WantSockets](raw)
	case MsgSockets:
		return decode[Sockets](raw)
	case MsgRelay:
		return decode[Relay](raw)
	case MsgUnrelay:
		return decode[Unrelay](raw)
	case MsgUnrelayed:
		return decode[Unrelayed](raw)
	case MsgStats:
		return decode[Stats](raw)
	case MsgExit:
		return decode[Exit](raw)
	case MsgProbe:
		return decode[ProbeReport](raw)
	case MsgPortOpen:
		return decode[PortOpen](raw)
	case MsgPortClose:
		return decode[PortClose](raw)
	case MsgPortDone:
		return decode[PortDone](raw)
	case MsgStatsAsk:
		return decode[StatsAsk](raw)
	case MsgStatsNow:
		return decode[StatsNow](raw)
	case MsgExecStart:
		return decode[ExecStart](raw)
	case MsgExecStarted:
		return decode[ExecStarted](raw)
	case MsgExecSignal:
		return decode[ExecSignal](raw)
	case MsgExecExit:
		return decode[ExecExit](raw)
	}
	return nil, fmt.Errorf("unknown message type %q", t)
}

func decode[P Payload](raw json.RawMessage) (Payload, error) {
	var p P
	if len(raw) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("reading a %q message: %w", p.MsgType(), err)
	}
	return p, nil
}

// ConfigPart is a piece of the helper's HelperConfig in JSON; the helper joins
// the pieces up to the one with Last. A configuration of thousands of
// published sockets does not fit in one message (maxMsg), nor in the
// environment (Linux bounds one variable to 128 KiB: E2BIG).
type ConfigPart struct {
	Data []byte `json:"data"`
	Last bool   `json:"last,omitempty"`
}

// HelperConfig is what the helper needs to know of the run.
type HelperConfig struct {
	Command []string `json:"command"`
	// Sockets are the inherited host sockets, in descriptor order from
	// FirstFD on.
	Sockets []SocketConfig `json:"sockets"`
	Root    bool           `json:"root,omitempty"`
	// IDs is who the helper becomes before anything else (EnterIDs):
	// the parent has written its id maps before it sent this message.
	IDs        IDsConfig `json:"ids"`
	Foreground bool      `json:"foreground,omitempty"`
	LogLevel   string    `json:"log_level"`
	// ConnectTimeout is how long a connection waits for the server to
	// listen.
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// SourceAddress is "client" (dial the server from the client's
	// address) or "loopback".
	SourceAddress string `json:"source_address"`
	// ProxyProtocol is 1 or 2 to send a PROXY protocol header first.
	ProxyProtocol int `json:"proxy_protocol,omitempty"`
	// Outbound says how programs inside reach out.
	Outbound OutboundConfig `json:"outbound"`
	// UDP flows: idle timeout and bound per host socket.
	UDPTimeout  time.Duration `json:"udp_timeout,omitempty"`
	UDPMaxFlows int           `json:"udp_max_flows,omitempty"`
	// Veth, with --net=veth, is the helper's end of the veth pair.
	Veth *VethConfig `json:"veth,omitempty"`
	// Direct gives the server the published TCP host sockets at its bind
	// (the native path, the default); DirectUDP the UDP ones too
	// (--direct-udp). Without Direct every port is relayed.
	Direct    bool `json:"direct,omitempty"`
	DirectUDP bool `json:"direct_udp,omitempty"`
	// SocketActivation hands the server the host sockets at descriptors
	// 3.. with LISTEN_FDS (--socket-activation): no relay, no bind filter.
	SocketActivation bool `json:"socket_activation,omitempty"`
	// CPUProfile, if set, is a file the helper writes a CPU profile to.
	CPUProfile string `json:"cpu_profile,omitempty"`
	// Confine, if set, confines the server (--confine): the exec step
	// calls Confine with it.
	Confine *ConfineConfig `json:"confine,omitempty"`
}

// IDsConfig is the part of the parent's IDPlan the helper acts on: the
// ids it runs as inside, and whether it must change to them (the caller
// is host root, so the helper is still kernel uid 0).
type IDsConfig struct {
	UID    int  `json:"uid"`
	GID    int  `json:"gid"`
	Switch bool `json:"switch,omitempty"`
}

// Plan is the IDPlan EnterIDs needs.
func (c IDsConfig) Plan() IDPlan { return IDPlan{UID: c.UID, GID: c.GID, Switch: c.Switch} }

// SocketConfig is one published host socket.
type SocketConfig struct {
	Proto  string         `json:"proto"` // "tcp" or "udp"
	Host   netip.AddrPort `json:"host"`
	Inside uint16         `json:"inside"`
	// Role is the socket's forward.Role on the native path: "" (listens),
	// "catch-all" (listens, both families) or "family" (bound, not
	// listening until the server gets it).
	Role string `json:"role,omitempty"`
	// Hidden: a socket nsbind does not print (the catch-all beside the
	// addresses of a spec, the IPv4 socket of [::]).
	Hidden bool `json:"hidden,omitempty"`
}

// Announced are the sockets nsbind prints, in order: all but the hidden
// ones.
func Announced(socks []SocketConfig) []SocketConfig {
	out := make([]SocketConfig, 0, len(socks))
	for _, s := range socks {
		if !s.Hidden {
			out = append(out, s)
		}
	}
	return out
}

// OutboundConfig is what the helper needs to let programs inside reach
// out.
type OutboundConfig struct {
	// Isolated: no way out at all (--isolated).
	Isolated bool `json:"isolated,omitempty"`
	// Forwards are loopback addresses inside that lead to the host's:
	// --to-host ports and resolvers on a loopback address.
	Forwards []HostForward `json:"forwards,omitempty"`
	// ResolvConf, if set, is bind-mounted over /etc/resolv.conf inside.
	ResolvConf string `json:"resolv_conf,omitempty"`
}

// HostForward is one loopback address and port inside that reaches the
// host's Host.
type HostForward struct {
	Proto  string         `json:"proto"`
	Inside netip.AddrPort `json:"inside"`
	Host   netip.AddrPort `json:"host"`
}

// VethConfig tells the helper how to configure its end of the veth pair.
// The addresses carry the subnet's prefix length; the IPv6 ones are
// invalid when the run has no IPv6 on the veth.
type VethConfig struct {
	Inside4  netip.Prefix `json:"inside4"`
	Gateway4 netip.Addr   `json:"gateway4"`
	Inside6  netip.Prefix `json:"inside6,omitzero"`
	Gateway6 netip.Addr   `json:"gateway6,omitzero"`
}

// VethReady: the parent has made the veth pair.
type VethReady struct{}

// Fail: the run failed before the server started. Code is the exit status.
type Fail struct {
	Code int        `json:"code"`
	Err  *StepError `json:"err"`
}

// Ready: the server runs; Pid is its pid inside.
type Ready struct {
	Pid int `json:"pid"`
}

// Signal asks the helper to deliver Signal to the server.
type Signal struct {
	Signal int `json:"sig"`
}

// Stopped: the server was stopped (Ctrl-Z). Terminal says whether its
// process group had the terminal then, for the parent to take it back
// (and not from the shell, which takes it when the job stops).
type Stopped struct {
	Terminal bool `json:"tty,omitempty"`
}

// Daemonized: the command exited 0 but Processes of the run still run
// (it put itself in the background). The helper now serves until the last
// of them has exited, and the signals it is sent go to all of them; Exit
// then carries the status of the last one reaped.
type Daemonized struct {
	Processes int `json:"n"`
}

// Continue asks the helper to continue the stopped server; Foreground
// says whether it gets the terminal first.
type Continue struct {
	Foreground bool `json:"fg,omitempty"`
}

// WantSockets asks the parent for N unconnected host sockets of Kind
// (forward.SocketKind) for outbound connections.
type WantSockets struct {
	Kind string `json:"kind"`
	N    int    `json:"n"`
}

// Sockets carries host sockets of Kind; none still tells the helper to ask
// again later.
type Sockets struct {
	Kind string `json:"kind"`
}

// Relay asks the parent to relay the attached host socket, Socket, on the
// host to host socket Target, which the server has (--direct). Both index
// HelperConfig.Sockets.
type Relay struct {
	Socket int `json:"sock"`
	Target int `json:"target"`
}

// Unrelay asks the parent to stop relaying Socket and answer Unrelayed.
type Unrelay struct {
	Socket int `json:"sock"`
}

// Unrelayed: the parent no longer relays Socket.
type Unrelayed struct {
	Socket int `json:"sock"`
}

// Stats are the counters of published host sockets, sent when the server
// has ended, StatsPerMsg at most per message.
type Stats struct {
	Ports []PortStats `json:"ports"`
}

// StatsPerMsg bounds the sockets of one Stats message, far below maxMsg.
const StatsPerMsg = 200

// PortStats are the counters of one host socket; Index is its place in
// HelperConfig.Sockets.
type PortStats struct {
	Index     int   `json:"i"`
	Conns     int64 `json:"conns,omitempty"`
	Active    int64 `json:"active,omitempty"`
	Failed    int64 `json:"failed,omitempty"`
	BytesIn   int64 `json:"in,omitempty"`
	BytesOut  int64 `json:"out,omitempty"`
	Datagrams int64 `json:"dgrams,omitempty"`
	// Native counts the connections of Conns that the server accepted
	// itself on the native path (the parent fills it in).
	Native int64 `json:"native,omitempty"`
}

// Exit: the server ended with Code (128+N for signal N), of Signal.
type Exit struct {
	Code   int `json:"code"`
	Signal int `json:"sig,omitempty"`
}

// ProbeReport is what the probe found inside, one entry per step; nil
// where the step worked.
type ProbeReport struct {
	Setup         *StepError `json:"setup,omitempty"`
	ProcMount     *StepError `json:"proc,omitempty"`
	Transparent   *StepError `json:"transparent,omitempty"`
	PolicyRouting *StepError `json:"policy_routing,omitempty"`
	SeccompNotify *StepError `json:"seccomp_notify,omitempty"`
	Outbound      *StepError `json:"outbound,omitempty"`
}

func (ConfigPart) MsgType() MsgType  { return MsgConfig }
func (VethReady) MsgType() MsgType   { return MsgVethReady }
func (Fail) MsgType() MsgType        { return MsgFail }
func (Ready) MsgType() MsgType       { return MsgReady }
func (Signal) MsgType() MsgType      { return MsgSignal }
func (Stopped) MsgType() MsgType     { return MsgStopped }
func (Continue) MsgType() MsgType    { return MsgContinue }
func (Daemonized) MsgType() MsgType  { return MsgDaemon }
func (WantSockets) MsgType() MsgType { return MsgWant }
func (Sockets) MsgType() MsgType     { return MsgSockets }
func (Relay) MsgType() MsgType       { return MsgRelay }
func (Unrelay) MsgType() MsgType     { return MsgUnrelay }
func (Unrelayed) MsgType() MsgType   { return MsgUnrelayed }
func (Stats) MsgType() MsgType       { return MsgStats }
func (Exit) MsgType() MsgType        { return MsgExit }
func (ProbeReport) MsgType() MsgType { return MsgProbe }
func (PortOpen) MsgType() MsgType    { return MsgPortOpen }
func (PortClose) MsgType() MsgType   { return MsgPortClose }
func (PortDone) MsgType() MsgType    { return MsgPortDone }
func (StatsAsk) MsgType() MsgType    { return MsgStatsAsk }
func (StatsNow) MsgType() MsgType    { return MsgStatsNow }
func (ExecStart) MsgType() MsgType   { return MsgExecStart }
func (ExecStarted) MsgType() MsgType { return MsgExecStarted }
func (ExecSignal) MsgType() MsgType  { return MsgExecSignal }
func (ExecExit) MsgType() MsgType    { return MsgExecExit }

// PortOpen asks the helper to relay the attached host sockets, one per
// entry of Sockets, to the server inside (nsbind port add while the run
// goes on). First is the index of the first: published sockets are
// numbered in the order they came, those of HelperConfig.Sockets first,
// and an index is never used again.
type PortOpen struct {
	ID      uint64         `json:"id"`
	First   int            `json:"first"`
	Sockets []SocketConfig `json:"sockets"`
}

// PortClose asks the helper to close the host sockets of these indices
// (PortOpen's): it stops accepting on them; connections in flight finish.
type PortClose struct {
	ID      uint64 `json:"id"`
	Indices []int  `json:"indices"`
}

// PortDone answers PortOpen or PortClose of ID; Err says why it failed,
// and then nothing of the request was done.
type PortDone struct {
	ID  uint64     `json:"id"`
	Err *StepError `json:"err,omitempty"`
}

// StatsAsk asks the helper for the counters of every published socket
// now.
type StatsAsk struct {
	ID uint64 `json:"id"`
}

// StatsNow answers StatsAsk, StatsPerMsg sockets at most per message;
// Last is set on the last. Ports are indexed as in PortOpen. Native lists
// the indices of host sockets the server holds itself (--direct).
type StatsNow struct {
	ID     uint64      `json:"id"`
	Ports  []PortStats `json:"ports,omitempty"`
	Native []int       `json:"native,omitempty"`
	Last   bool        `json:"last,omitempty"`
}

// ExecStart asks the helper to run Args inside, as it runs the server
// (the exec step: same uid, no capabilities without --root, no_new_privs,
// no nsbind descriptors or variables), with the three attached files as
// its stdin, stdout and stderr. Env is added to the server's environment;
// Dir, if set, is the working directory. With TTY the files are a
// terminal, which becomes the command's controlling terminal in a session
// of its own.
type ExecStart struct {
	ID   uint64   `json:"id"`
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	TTY  bool     `json:"tty,omitempty"`
}

// ExecStarted: the command of ExecStart ID runs as Pid (inside), or, with
// Err, could not be run, Code being the status (126, 127) as for the
// server.
type ExecStarted struct {
	ID   uint64     `json:"id"`
	Pid  int        `json:"pid,omitempty"`
	Code int        `json:"code,omitempty"`
	Err  *StepError `json:"err,omitempty"`
}

// ExecSignal asks the helper to deliver Signal to the command of ID.
type ExecSignal struct {
	ID     uint64 `json:"id"`
	Signal int    `json:"sig"`
}

// ExecExit: the command of ID ended with Code, or of Signal.
type ExecExit struct {
	ID     uint64 `json:"id"`
	Code   int    `json:"code"`
	Signal int    `json:"sig,omitempty"`
}

// StepError is an error as it crosses from one process to another: the
// step that failed (a NamespaceError's, if any), its text and its errno,
// so that errors.Is and errors.As work on the other side.
type StepError struct {
	Step  string        `json:"step,omitempty"`
	Text  string        `json:"text"`
	Errno syscall.Errno `json:"errno,omitempty"`
}

// NewStepError is err ready to cross; nil for nil.
func NewStepError(err error) *StepError {
	if err == nil {
		return nil
	}
	e := &StepError{Text: err.Error()}
	var ne *NamespaceError
	if errors.As(err, &ne) {
		e.Step, e.Text = ne.Step, ne.Err.Error()
	}
	errors.As(err, &e.Errno)
	return e
}

func (e *StepError) Error() string { return e.Text }

func (e *StepError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Err is the error on the receiving side: a *NamespaceError when a step
// of the namespaces failed, so the parent can diagnose it. nil for nil.
func (e *StepError) Err() error {
	switch {
	case e == nil:
		return nil
	case e.Step != "":
		return &NamespaceError{Step: e.Step, Err: e}
	}
	return e
}

// maxMsg bounds one message.
const maxMsg = 64 << 10

// configChunk is the most configuration JSON in one ConfigPart: base64
// makes it a third larger, still below maxMsg.
const configChunk = 44 << 10

// MaxFiles bounds the descriptors passed with one message.
const MaxFiles = 64

// Ctrl is one end of the control channel: a SOCK_SEQPACKET socket, so
// each message arrives whole and a closed end reads as EOF. Send may be
// called from any goroutine; Recv (and Expect, RecvConfig) from one at a
// time.
type Ctrl struct {
	c *net.UnixConn
	// buf and oob are Recv's, reused: one Recv runs at a time.
	buf, oob []byte
}

// NewCtrl wraps f, a SOCK_SEQPACKET socket; f is closed.
func NewCtrl(f *os.File) (*Ctrl, error) {
	defer f.Close()
	typ, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_SEQPACKET {
		return nil, fmt.Errorf("opening the control channel: descriptor %d is not nsbind's control channel (this role is started by nsbind itself)", f.Fd())
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("opening the control channel: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("opening the control channel: descriptor %d is not a unix socket", f.Fd())
	}
	return &Ctrl{c: uc}, nil
}

type envelope struct {
	Type    MsgType         `json:"t"`
	Payload json.RawMessage `json:"p,omitempty"`
}

// Send sends p, with files passed alongside (SCM_RIGHTS) if any.
func (c *Ctrl) Send(p Payload, files ...*os.File) error {
	if len(files) > MaxFiles {
		return fmt.Errorf("sending %q: %d descriptors, at most %d per message", p.MsgType(), len(files), MaxFiles)
	}
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	b, err := json.Marshal(envelope{Type: p.MsgType(), Payload: body})
	if err != nil {
		return err
	}
	if len(b) > maxMsg {
		return fmt.Errorf("sending %q: %d bytes, at most %d per message", p.MsgType(), len(b), maxMsg)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.c.WriteMsgUnix(b, oob, nil)
	return err
}

// ErrTruncated is a message larger than the receiver's buffer (MSG_TRUNC).
var ErrTruncated = errors.New("message truncated")

// ErrFilesLost is a message whose descriptors did not all arrive
// (MSG_CTRUNC): more than MaxFiles, or the receiver's descriptor limit
// reached.
var ErrFilesLost = errors.New("descriptors lost (the receiver's descriptor limit, or more than MaxFiles)")

// MessageError is one message that arrived but cannot be used: truncated,
// with descriptors lost, or not in the catalogue. The channel goes on.
type MessageError struct{ Err error }

func (e *MessageError) Error() string { return "reading the control channel: " + e.Err.Error() }

func (e *MessageError) Unwrap() error { return e.Err }

// Recv receives one message and the files passed with it. At EOF (the
// other end is gone) it returns io.EOF. On any error it has closed the
// files that came.
func (c *Ctrl) Recv() (Payload, []*os.File, error) {
	if c.buf == nil {
		c.buf = make([]byte, maxMsg)
		c.oob = make([]byte, unix.CmsgSpace(4*MaxFiles))
	}
	// Go asks for MSG_CMSG_CLOEXEC on Linux: no descriptor leaks into a
	// child between here and the caller.
	n, oobn, flags, _, err := c.c.ReadMsgUnix(c.buf, c.oob)
	if err != nil {
		return nil, nil, err
	}
	files, ferr := parseRights(c.oob[:oobn])
	fail := func(err error) (Payload, []*os.File, error) {
		closeFiles(files)
		return nil, nil, &MessageError{Err: err}
	}
	switch {
	case ferr != nil:
		return fail(ferr)
	case flags&unix.MSG_TRUNC != 0:
		return fail(fmt.Errorf("%w (more than %d bytes)", ErrTruncated, maxMsg))
	case flags&unix.MSG_CTRUNC != 0:
		return fail(ErrFilesLost)
	case n == 0:
		closeFiles(files)
		return nil, nil, io.EOF
	}
	var env envelope
	if err := json.Unmarshal(c.buf[:n], &env); err != nil {
		return fail(err)
	}
	p, err := newPayload(env.Type, env.Payload)
	if err != nil {
		return fail(err)
	}
	return p, files, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, cm := range cmsgs {
		fds, err := unix.ParseUnixRights(&cm)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "ctrl-fd"))
		}
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// Expect receives one message, which must be a P: any other is an error
// (and its files are closed).
func Expect[P Payload](c *Ctrl) (P, []*os.File, error) {
	var want P
	p, files, err := c.Recv()
	if err != nil {
		return want, nil, err
	}
	got, ok := p.(P)
	if !ok {
		closeFiles(files)
		return want, nil, &MessageError{Err: fmt.Errorf("unexpected message %q, want %q", p.MsgType(), want.MsgType())}
	}
	return got, files, nil
}

// SendConfig sends cfg as ConfigParts.
func (c *Ctrl) SendConfig(cfg HelperConfig) error {
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	for {
		n := min(len(b), configChunk)
		part := ConfigPart{Data: b[:n], Last: n == len(b)}
		if err := c.Send(part); err != nil {
			return fmt.Errorf("sending the helper's configuration: %w", err)
		}
		if part.Last {
			return nil
		}
		b = b[n:]
	}
}

// RecvConfig receives the HelperConfig that SendConfig sent, which must be
// the first thing on the channel.
func (c *Ctrl) RecvConfig() (HelperConfig, error) {
	var cfg HelperConfig
	var b []byte
	for {
		part, files, err := Expect[ConfigPart](c)
		closeFiles(files)
		if err != nil {
			return cfg, fmt.Errorf("reading the helper's configuration: %w", err)
		}
		b = append(b, part.Data...)
		if part.Last {
			break
		}
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return cfg, fmt.Errorf("reading the helper's configuration: %w", err)
	}
	if len(cfg.Command) == 0 {
		return cfg, errors.New("reading the helper's configuration: no command")
	}
	return cfg, nil
}

// Close closes this end.
func (c *Ctrl) Close() error { return c.c.Close() }
