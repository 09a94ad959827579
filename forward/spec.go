package forward

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is a transport protocol of a published port.
type Proto string

// The protocols a spec may name.
const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// PortRange is an inclusive range of ports; a single port has Start == End.
type PortRange struct {
	Start, End uint16
}

// Len is the number of ports in the range.
func (r PortRange) Len() int { return int(r.End) - int(r.Start) + 1 }

// String formats the range as "N" or "N-M".
func (r PortRange) String() string {
	if r.Start == r.End {
		return strconv.Itoa(int(r.Start))
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// Spec is one parsed -p argument: NSPORT[-END][:[HOSTIP:]HOSTPORT[-END]][/PROTO].
type Spec struct {
	// Inside is the port (or range) the server binds inside the namespace.
	Inside PortRange
	// HostAddr is the host address to listen on; the zero Addr means
	// loopback of both families (127.0.0.1 and ::1).
	HostAddr netip.Addr
	// Host is the port (or range) on the host. Host.Start == 0 (a single
	// port) asks the kernel to choose, for each inside port.
	Host  PortRange
	Proto Proto
}

// String formats s in the canonical form that ParseSpec reads back to s.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString(s.Inside.String())
	b.WriteByte(':')
	if s.HostAddr.IsValid() {
		if s.HostAddr.Is4() {
			b.WriteString(s.HostAddr.String())
		} else {
			b.WriteByte('[')
			b.WriteString(s.HostAddr.String())
			b.WriteByte(']')
		}
		b.WriteByte(':')
	}
	b.WriteString(s.Host.String())
	b.WriteByte('/')
	b.WriteString(string(s.Proto))
	return b.String()
}

// SpecError is a -p argument that cannot be parsed; its message quotes the
// argument and says which part is wrong.
type SpecError struct {
	Spec   string
	Reason string
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("invalid port spec %q: %s", e.Spec, e.Reason)
}

// ParseSpec parses one -p argument.
func ParseSpec(arg string) (Spec, error) {
	bad := func(format string, a ...any) (Spec, error) {
		return Spec{}, &SpecError{Spec: arg, Reason: fmt.Sprintf(format, a...)}
	}
	rest := arg
	s := Spec{Proto: TCP}
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		p := strings.ToLower(rest[i+1:])
		rest = rest[:i]
		switch Proto(p) {
		case TCP, UDP:
			s.Proto = Proto(p)
		case "":
			return bad("the protocol after '/' is empty (use /tcp or /udp)")
		default:
			return bad("unknown protocol %q (use /tcp or /udp)", p)
		}
	}
	if rest == "" {
		return bad("no port (write INSIDEPORT[:HOSTPORT], e.g. 80:8080)")
	}
	insidePart, hostPart, hasHost := strings.Cut(rest, ":")
	inside, err := parseRange(insidePart, "inside port")
	if err != nil {
		return bad("%v", err)
	}
	if inside.Start == 0 {
		return bad("inside port 0 cannot be published (the first number is the port the server binds inside)")
	}
	s.Inside = inside
	if !hasHost {
		s.Host = inside
		return s, nil
	}
	portPart := hostPart
	if strings.HasPrefix(hostPart, "[") {
		end := strings.IndexByte(hostPart, ']')
		if end < 0 {
			return bad("missing ']' after the IPv6 address")
		}
		addrText := hostPart[1:end]
		after := hostPart[end+1:]
		if !strings.HasPrefix(after, ":") {
			return bad("expected ':HOSTPORT' after the bracketed address, found %q", after)
		}
		addr, err := netip.ParseAddr(addrText)
		if err != nil || !addr.Is6() {
			return bad("%q is not an IPv6 address", addrText)
		}
		s.HostAddr = addr
		portPart = after[1:]
	} else if i := strings.LastIndexByte(hostPart, ':'); i >= 0 {
		addrText := hostPart[:i]
		if strings.Contains(addrText, ":") || strings.Contains(addrText, "]") {
			return bad("put an IPv6 host address in brackets, e.g. 80:[::1]:8080")
		}
		addr, err := netip.ParseAddr(addrText)
		if err != nil || !addr.Is4() {
			return bad("%q is not an IPv4 address (IPv6 goes in brackets)", addrText)
		}
		s.HostAddr = addr
		portPart = hostPart[i+1:]
	}
	// A host socket listens on an address of this host: a group or the
	// broadcast address would bind (UDP) and then never see a client.
	if a := s.HostAddr.Unmap(); a.IsMulticast() {
		return bad("host address %s is a multicast group, not an address of this host: publish on a unicast address (e.g. 0.0.0.0 or 127.0.0.1)", s.HostAddr)
	} else if a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return bad("host address %s is the broadcast address, not an address of this host: publish on a unicast address (e.g. 0.0.0.0 or 127.0.0.1)", s.HostAddr)
	}
	if strings.ContainsAny(portPart, "[]") {
		return bad("unexpected bracket in host port %q", portPart)
	}
	host, err := parseRange(portPart, "host port")
	if err != nil {
		return bad("%v", err)
	}
	switch {
	case host.Start == 0 && host.End != 0:
		return bad("a host port range cannot start at 0")
	case host.Start == 0:
		// The kernel picks a port for each inside port.
	case host.Len() != inside.Len():
		return bad("inside range %s has %d ports but host range %s has %d (ranges map port by port)",
			inside, inside.Len(), host, host.Len())
	}
	s.Host = host
	return s, nil
}

func parseRange(text, what string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(text, "-")
	start, err := parsePort(lo, what)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{start, start}, nil
	}
	end, err := parsePort(hi, what+" range end")
	if err != nil {
		return PortRange{}, err
	}
	if end < start {
		return PortRange{}, fmt.Errorf("%s range %s is reversed (write %d-%d)", what, text, end, start)
	}
	return PortRange{start, end}, nil
}

func parsePort(text, what string) (uint16, error) {
	if text == "" {
		return 0, fmt.Errorf("%s is empty", what)
	}
	for _, c := range text {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s %q is not a number", what, text)
		}
	}
	n, err := strconv.ParseUint(text, 10, 16)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%s %s is above 65535", what, text)
		}
		return 0, fmt.Errorf("%s %q is not a number", what, text)
	}
	return uint16(n), nil
}

// Binding is one host socket a spec asks for and the inside port it leads to.
type Binding struct {
	Proto Proto
	// Host is the address and port to bind on the host; port 0 lets the
	// kernel choose.
	Host netip.AddrPort
	// Inside is the port the server binds inside.
	Inside uint16
	// Spec is the argument this binding came from, for messages.
	Spec Spec
	// Default is true when Host's address is the default loopback, which
	// nsbind may skip where that family is not available.
	Default bool
}

// Wildcard is true when the binding listens on every address; an IPv6
// wildcard is dual-stack.
func (b Binding) Wildcard() bool { return b.Host.Addr().IsUnspecified() }

// Expand turns specs into the host sockets they need, one per address and
// port, and refuses two specs that claim the same host socket.
func Expand(specs []Spec) ([]Binding, error) {
	var out []Binding
	// Only bindings of one protocol and host port can conflict: index
	// them so, or thousands of ports take a quadratic time to check.
	type protoPort struct {
		proto Proto
		port  uint16
	}
	byPort := make(map[protoPort][]int)
	for _, s := range specs {
		addrs := []netip.Addr{s.HostAddr}
		def := !s.HostAddr.IsValid()
		if def {
			addrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
		}
		for i := 0; i < s.Inside.Len(); i++ {
			hostPort := s.Host.Start
			if hostPort != 0 {
				hostPort += uint16(i)
			}
			for _, a := range addrs {
				b := Binding{Proto: s.Proto, Host: netip.AddrPortFrom(a, hostPort),
					Inside: s.Inside.Start + uint16(i), Spec: s, Default: def}
				key := protoPort{b.Proto, hostPort}
				for _, j := range byPort[key] {
					if o := out[j]; conflicts(o, b) {
						return nil, fmt.Errorf("port specs %q and %q both claim host %s %s",
							o.Spec.String(), s.String(), b.Proto, hostString(b.Host))
					}
				}
				if hostPort != 0 {
					byPort[key] = append(byPort[key], len(out))
				}
				out = append(out, b)
			}
		}
	}
	return out, nil
}

// conflicts reports whether two bindings would need the same host socket.
func conflicts(a, b Binding) bool {
	if a.Proto != b.Proto || a.Host.Port() == 0 || a.Host.Port() != b.Host.Port() {
		return false
	}
	x, y := a.Host.Addr(), b.Host.Addr()
	switch {
	case x == y:
		return true
	case x.IsUnspecified() && x.Is6(), y.IsUnspecified() && y.Is6():
		return true // [::] is dual-stack: it takes the port on every address
	case x.IsUnspecified() || y.IsUnspecified():
		return x.Is4() == y.Is4()
	}
	return false
}

func hostString(ap netip.AddrPort) string {
	if ap.Port() == 0 {
		if ap.Addr().Is4() {
			return ap.Addr().String() + ":0"
		}
		return "[" + ap.Addr().String() + "]:0"
	}
	return ap.String()
}
