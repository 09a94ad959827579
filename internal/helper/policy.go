package helper

import (
	"net/netip"
	"syscall"

	"github.com/nsbind/nsbind/forward"
)

// policy decides where on the host an outbound connection or datagram may
// go, from the run's own configuration only. What reaches the helper's
// outbound sockets cannot be trusted to have come through the rules: a
// program inside may connect to the helper's listener or send to its
// TPROXY socket directly (their ports are in /proc/net/tcp and udp), and a
// server with CAP_NET_ADMIN inside (--root) may set nsbind's packet marks
// itself or change the rules. So neither the mark nor the path a
// connection took counts; only its original destination, against:
//
//   - --isolated: nothing goes out.
//   - The helper's own sockets (the redirect listener, the TPROXY socket):
//     refused. Nothing legitimate is addressed to them; a connection whose
//     original destination is one of them came there directly.
//   - Loopback and the unspecified address (which the kernel treats as
//     loopback): the namespace's own. Only the ports forwarded to the host
//     (--to-host, a resolver on the host's loopback) lead out, to the host
//     address they name; every other one is refused, so no program inside
//     reaches a host loopback service it was not given.
//   - Any other address: dialed as it is, as a program on the host would.
type policy struct {
	isolated bool
	// toHost maps forwarded loopback addresses inside to host addresses.
	toHost map[protoAddr]netip.AddrPort
	// own are the helper's own outbound sockets inside.
	own map[protoAddr]bool
}

// protoAddr is an address and port of one protocol.
type protoAddr struct {
	proto forward.Proto
	ap    netip.AddrPort
}

// errNotAllowed is the refusal: ECONNREFUSED, so that a program's connect
// is reset (verdict refuse) as if nothing listened there.
var errNotAllowed = syscall.ECONNREFUSED

// decide returns where on the host a connection (TCP) or datagram (UDP) a
// program inside addressed to dst goes, or errNotAllowed.
func (p *policy) decide(proto forward.Proto, dst netip.AddrPort) (netip.AddrPort, error) {
	if p.isolated {
		return netip.AddrPort{}, errNotAllowed
	}
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	k := protoAddr{proto, dst}
	if p.own[k] {
		return netip.AddrPort{}, errNotAllowed
	}
	if a := dst.Addr(); a.IsLoopback() || a.IsUnspecified() {
		if h, ok := p.toHost[k]; ok {
			return h, nil
		}
		return netip.AddrPort{}, errNotAllowed
	}
	return dst, nil
}

// newPolicy is the policy of a run with the given forwards, the helper's
// own sockets as listed.
func newPolicy(isolated bool, forwards []hostForward, own []protoAddr) *policy {
	p := &policy{isolated: isolated, toHost: make(map[protoAddr]netip.AddrPort), own: make(map[protoAddr]bool)}
	for _, f := range forwards {
		p.toHost[protoAddr{f.proto, unmapAP(f.inside)}] = f.host
	}
	for _, o := range own {
		p.own[protoAddr{o.proto, unmapAP(o.ap)}] = true
	}
	return p
}

// hostForward is a forwarded loopback port (nsutil.HostForward, parsed).
type hostForward struct {
	proto        forward.Proto
	inside, host netip.AddrPort
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
