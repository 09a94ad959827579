package forward

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Socket activation, the systemd protocol (sd_listen_fds(3)): a process
// started with LISTEN_PID=<its own pid> and LISTEN_FDS=N owns the listening
// sockets at descriptors 3..3+N-1, named in order by LISTEN_FDNAMES
// (colon-separated). nsbind takes part twice:
//
//   - In: started by systemd (or systemd-socket-activate) behind a .socket
//     unit, nsbind's parent takes the sockets root bound (Inherited) and uses
//     them for the publications they match (Claim) instead of binding its
//     own. The port below 1024 so reaches a server run by an unprivileged
//     user, with no capability anywhere.
//   - Out: with --socket-activation the server itself gets the host sockets
//     the same way (ActivationFDs, ActivationEnv), for servers that speak
//     the protocol: no seccomp, no relay, any kernel.
//
// The LISTEN_* variables are meant for one process: nsbind removes them
// (WithoutActivationEnv) from what the helper and the server see, or the
// server would take its own descriptors 3.. for sockets.

// ListenFDsStart is the first descriptor of socket activation
// (SD_LISTEN_FDS_START).
const ListenFDsStart = 3

// The environment variables of socket activation.
const (
	EnvListenPID     = "LISTEN_PID"
	EnvListenFDs     = "LISTEN_FDS"
	EnvListenFDNames = "LISTEN_FDNAMES"
)

// maxListenFDs bounds LISTEN_FDS: more sockets than ports is a bad value,
// not something to walk descriptor by descriptor.
const maxListenFDs = 65535

// ActivatedSocket is a listening socket inherited through socket activation.
type ActivatedSocket struct {
	// FD is the descriptor the socket arrived at (3 on).
	FD int
	// Name is its entry in LISTEN_FDNAMES (a socket unit's
	// FileDescriptorName=, by default the unit's name); empty when the
	// variable was not set.
	Name  string
	Proto Proto
	// Addr is the address the socket is bound to, as getsockname reports
	// it ([::] for an IPv6 wildcard, 0.0.0.0 for an IPv4 one).
	Addr netip.AddrPort
	// V6Only is IPV6_V6ONLY of an IPv6 socket: false for a [::] socket
	// that also takes IPv4 (systemd's default, BindIPv6Only=both).
	V6Only bool
	// File is the socket, close-on-exec.
	File *os.File
}

// DualStack is true for an IPv6 wildcard socket that takes IPv4 as well.
func (a ActivatedSocket) DualStack() bool {
	return a.Addr.Addr().Is6() && a.Addr.Addr().IsUnspecified() && !a.V6Only
}

// String describes the socket for messages: `fd 3 "web.socket" (tcp [::]:80, dual-stack)`.
func (a ActivatedSocket) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fd %d", a.FD)
	if a.Name != "" {
		fmt.Fprintf(&b, " %q", a.Name)
	}
	fmt.Fprintf(&b, " (%s %s", a.Proto, a.Addr)
	switch {
	case a.DualStack():
		b.WriteString(", dual-stack")
	case a.Addr.Addr().Is6() && a.Addr.Addr().IsUnspecified():
		b.WriteString(", IPv6 only")
	}
	b.WriteByte(')')
	return b.String()
}

// HostSocket turns the socket into the host socket of b, as Bind would have
// bound it: the rest of a run serves it unchanged. Binding.Host becomes the
// socket's own address (the socket unit, not the spec, decided where it
// listens) and Default false, since it is no longer the default loopback.
func (a ActivatedSocket) HostSocket(b Binding) HostSocket {
	b.Host = a.Addr
	b.Default = false
	return HostSocket{Binding: b, Addr: a.Addr, File: a.File}
}

// UnclaimedError is inherited sockets that no publication claims. A run
// must not start with one: connections to it would wait in its backlog
// with nobody to accept them.
type UnclaimedError struct {
	Sockets []ActivatedSocket
}

func (e *UnclaimedError) Error() string {
	parts := make([]string, len(e.Sockets))
	for i, a := range e.Sockets {
		suffix := ""
		if a.Proto == UDP {
			suffix = "/udp"
		}
		addr := a.Addr.Addr().String()
		if a.Addr.Addr().Is6() {
			addr = "[" + addr + "]"
		}
		parts[i] = fmt.Sprintf("inherited socket %s is not published by any -p (add -p INSIDE:%d%s, or -p INSIDE:%s:%d%s for this address only)",
			a, a.Addr.Port(), suffix, addr, a.Addr.Port(), suffix)
	}
	return strings.Join(parts, "; ")
}

// Claim matches publications with inherited sockets. A binding that matches
// one uses it instead of a socket of its own; claimed is those sockets, as
// host sockets, in the order of bs, and rest is the bindings left for Bind.
// A binding matches a socket when
//
//  1. the protocol is the same: a stream socket is tcp, a datagram one udp;
//  2. the host port is the same and not 0 (port 0 asks for a fresh port the
//     kernel chooses, so it never matches);
//  3. the address matches. A spec with a host address matches only the
//     socket bound to exactly that address: 0.0.0.0 an IPv4 wildcard
//     socket, [::] an IPv6 wildcard one (dual-stack or IPv6-only),
//     127.0.0.1 a socket on 127.0.0.1. A spec without one (`-p 80:80`, the
//     loopback pair 127.0.0.1 and ::1 when nsbind binds) matches a socket
//     on any address of that port: the socket unit decides where it
//     listens — ListenStream=80 is one dual-stack [::]:80 socket that
//     serves both families, ListenStream=127.0.0.1:8080 loopback IPv4 only
//     — and nsbind binds no loopback socket of its own beside it.
//
// When a socket matches a spec with its exact address and one without, the
// one with the address takes it. A spec takes every socket it matches
// (several ListenStream= lines of one port, or ReusePort= twins), and then
// binds nothing itself; a spec that matches none binds as usual. Names from
// LISTEN_FDNAMES play no part (a spec has no way to name a socket); they
// only appear in messages. A socket that no binding claims is an
// *UnclaimedError naming every such socket; then nothing is claimed.
func Claim(bs []Binding, socks []ActivatedSocket) (claimed []HostSocket, rest []Binding, err error) {
	// owner[i] is the binding socket i goes to, -1 for none.
	owner := make([]int, len(socks))
	for i, a := range socks {
		owner[i] = -1
		for j, b := range bs {
			if b.Proto != a.Proto || b.Host.Port() == 0 || b.Host.Port() != a.Addr.Port() {
				continue
			}
			if b.Host.Addr() == a.Addr.Addr() && !b.Default {
				owner[i] = j // exact beats the default
				break
			}
			if b.Default && owner[i] < 0 {
				owner[i] = j
			}
		}
	}
	var unclaimed []ActivatedSocket
	for i, j := range owner {
		if j < 0 {
			unclaimed = append(unclaimed, socks[i])
		}
	}
	if len(unclaimed) > 0 {
		return nil, nil, &UnclaimedError{Sockets: unclaimed}
	}
	// A default pair is one spec's two bindings of an inside port (the
	// loopback of each family): whichever of them a socket matched, the
	// pair is served by the inherited sockets alone.
	taken := make([]bool, len(bs))
	for j, b := range bs {
		for i, o := range owner {
			if o == j || (b.Default && bs[o].Default && pairOf(bs[o], b)) {
				if o == j {
					claimed = append(claimed, socks[i].HostSocket(b))
				}
				taken[j] = true
			}
		}
	}
	for j, b := range bs {
		if !taken[j] {
			rest = append(rest, b)
		}
	}
	return claimed, rest, nil
}

// pairOf reports whether a and b are the default loopback pair of one spec
// and inside port.
func pairOf(a, b Binding) bool {
	return a.Spec == b.Spec && a.Inside == b.Inside && a.Proto == b.Proto && a.Host.Port() == b.Host.Port()
}

// WithoutActivationEnv returns env without LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES, as sd_listen_fds(unset_environment=1) leaves it. The
// helper and the server must not see nsbind's: with a matching pid they
// would take descriptors 3.. for sockets that are not theirs.
func WithoutActivationEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return k == EnvListenPID || k == EnvListenFDs || k == EnvListenFDNames
	})
}

// ActivationEnv is the environment entries that hand len(names) sockets at
// descriptors 3.. to the process pid: LISTEN_FDS, LISTEN_PID and
// LISTEN_FDNAMES. pid must be the server's own pid, which only the exec
// step knows (os.Getpid() right before execve: the server is that same
// process). A name systemd would refuse (empty, over 255 bytes, with ':'
// or a control character) becomes "unknown", systemd's name for an unnamed
// descriptor. Append the entries to an environment without LISTEN_*
// (WithoutActivationEnv).
func ActivationEnv(names []string, pid int) []string {
	clean := make([]string, len(names))
	for i, n := range names {
		clean[i] = n
		if !validFDName(n) {
			clean[i] = "unknown"
		}
	}
	return []string{
		EnvListenFDs + "=" + strconv.Itoa(len(names)),
		EnvListenPID + "=" + strconv.Itoa(pid),
		EnvListenFDNames + "=" + strings.Join(clean, ":"),
	}
}

// FDName is the LISTEN_FDNAMES entry --socket-activation gives a host
// socket: the inside port and protocol, e.g. "80/tcp", so a server with
// several sockets can tell them apart by the port it was told to serve.
func FDName(h HostSocket) string {
	return fmt.Sprintf("%d/%s", h.Inside, h.Proto)
}

// validFDName is systemd's fdname_is_valid: printable ASCII but ':', at
// most 255 bytes, not empty.
func validFDName(n string) bool {
	if n == "" || len(n) > 255 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; c < ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// lookupEnv is getenv over env: the first entry of key wins, as it does
// for getenv(3) and os.Getenv.
func lookupEnv(env []string, key string) (string, bool) {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}
