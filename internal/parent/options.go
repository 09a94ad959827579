package parent

import (
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/nsbind/nsbind/nsutil"
)

// Options are nsbind run's flags, checked by cmd/nsbind, and what Run
// reports through.
type Options struct {
	// Publish are the -p specs; Command the server's command line.
	Publish []string
	Command []string
	Root    bool
	// User is --user NAME|UID: whom the server runs as when nsbind runs
	// as root ("" : SUDO_UID and SUDO_GID).
	User  string
	Quiet bool
	// LogLevel is the helper's --log-level (error with --quiet).
	LogLevel       string
	ConnectTimeout time.Duration
	PortsFile      string
	SourceAddress  string
	// ProxyProtocol is 0, or the PROXY protocol version, 1 or 2.
	ProxyProtocol int
	ToHost        []string
	Isolated      bool
	ResolvConf    string
	UDPTimeout    time.Duration
	UDPMaxFlows   int
	// Veth is --net=veth; Subnet4 and Subnet6 its --subnet values, zero
	// to let nsbind choose.
	Veth             bool
	Subnet4, Subnet6 netip.Prefix
	// Direct is the native path for TCP (the default); DirectUDP for UDP
	// too (--direct-udp).
	Direct    bool
	DirectUDP bool
	// SocketActivation is --socket-activation: the server gets the host
	// sockets at descriptors 3.. with LISTEN_FDS, the systemd way.
	SocketActivation bool
	Stats            bool
	// CPUProfile is a file for the helper's CPU profile, if any.
	CPUProfile string
	// Confine, if set, confines the server (--confine), checked with
	// nsutil.CheckConfine already.
	Confine *nsutil.ConfineConfig

	// Name is the instance's name (--name); empty for a default one
	// (internal/instance).
	Name string

	Logger *slog.Logger
	Stderr io.Writer
	// Describe turns an error into the one line nsbind prints, with the
	// remedy for the errors it knows (internal/hints).
	Describe func(error) string
}
