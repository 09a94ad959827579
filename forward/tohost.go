package forward

import (
	"fmt"
	"strconv"
	"strings"
)

// ToHostSpec is one --to-host argument, PORT[:HOSTPORT][/PROTO]: a program
// inside that connects to localhost:Port (127.0.0.1 or ::1) reaches the
// host's localhost:HostPort, in the same family.
type ToHostSpec struct {
	Port, HostPort uint16
	Proto          Proto
}

// String formats t in the canonical form ParseToHost reads back to t.
func (t ToHostSpec) String() string {
	return strconv.Itoa(int(t.Port)) + ":" + strconv.Itoa(int(t.HostPort)) + "/" + string(t.Proto)
}

// ToHostError is a --to-host argument that cannot be parsed.
type ToHostError struct {
	Spec   string
	Reason string
}

func (e *ToHostError) Error() string {
	return fmt.Sprintf("invalid --to-host %q: %s (write PORT[:HOSTPORT][/PROTO], e.g. --to-host 5432 or --to-host 6379:16379/tcp)", e.Spec, e.Reason)
}

// ParseToHost parses one --to-host argument.
func ParseToHost(arg string) (ToHostSpec, error) {
	bad := func(format string, a ...any) (ToHostSpec, error) {
		return ToHostSpec{}, &ToHostError{Spec: arg, Reason: fmt.Sprintf(format, a...)}
	}
	t := ToHostSpec{Proto: TCP}
	rest := arg
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch p := Proto(strings.ToLower(rest[i+1:])); p {
		case TCP, UDP:
			t.Proto = p
		default:
			return bad("unknown protocol %q (use /tcp or /udp)", rest[i+1:])
		}
		rest = rest[:i]
	}
	portText, hostText, hasHost := strings.Cut(rest, ":")
	port, err := parsePort(portText, "port")
	if err != nil {
		return bad("%v", err)
	}
	t.Port, t.HostPort = port, port
	if hasHost {
		if t.HostPort, err = parsePort(hostText, "host port"); err != nil {
			return bad("%v", err)
		}
	}
	if t.Port == 0 || t.HostPort == 0 {
		return bad("port 0 cannot be forwarded")
	}
	return t, nil
}
