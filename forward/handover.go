package forward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
)

// Handover decides, for the native path, which of the server's bind(2)
// calls get a host socket instead of a socket inside, and keeps track of
// what serves each host socket. It only decides: the caller moves the
// sockets and then records what it did with Record. Methods are not safe
// for concurrent use.
//
// The host sockets of one published TCP port (forward.Bind, native) are a
// catch-all, an IPv6 socket that listens from the start and takes the
// clients of both loopback families (or of the chosen address), and family
// sockets beside it, bound with SO_REUSEPORT but not listening, which win
// the kernel's lookup for their family once they listen. The rules:
//   - A bind to a published inside port and protocol, on the wildcard or a
//     loopback address, gets a host socket of the same socket family: a
//     dual-stack IPv6 bind the catch-all (both families native), an IPv4
//     bind the IPv4 family socket, an IPv6-only or ::1 bind the IPv6
//     family socket where there is one (the default loopback spec), the
//     catch-all otherwise. A plain host socket (UDP, one IPv6 address)
//     goes to a bind of its family. Among the sockets a bind may get, one
//     nobody serves yet is preferred, then one the helper relays (it
//     stops), then one relayed on the host (it is taken back).
//   - A host socket the server already has is given again to a bind with
//     SO_REUSEPORT when the first had it too (the server's workers then share
//     one queue, as without SO_REUSEPORT), or when no process holds it any
//     more (the server closed it and binds again, as iperf3 does per test).
//   - Every other bind continues inside, and the listening host sockets of
//     that port nobody serves yet are relayed to it, as with the relay.
//   - Once the server has a host socket, the other listening host sockets
//     of its port that nobody serves (the catch-all, when the server took
//     a family socket) are relayed on the host to it, so the clients
//     queued there and the family the server does not listen on reach it.
//   - A Fixed host socket (UDP without --direct-udp) is relayed for the
//     whole run and never given.
type Handover struct {
	socks []handoverSocket
}

// HandoverState is what serves a host socket.
type HandoverState int

// The states of a host socket on the native path.
const (
	// Waiting: nobody accepts yet; connections wait in its backlog.
	Waiting HandoverState = iota
	// Relayed: the helper relays it to the server's socket inside.
	Relayed
	// Forwarded: relayed on the host to the host socket the server has.
	Forwarded
	// Given: the server has it.
	Given
)

func (s HandoverState) String() string {
	switch s {
	case Waiting:
		return "waiting"
	case Relayed:
		return "relayed"
	case Forwarded:
		return "forwarded"
	case Given:
		return "given"
	}
	return fmt.Sprintf("HandoverState(%d)", int(s))
}

// Published is one host socket and the inside port it is for.
type Published struct {
	Proto  Proto
	Host   netip.AddrPort
	Inside uint16
	// Role is what the socket does on the native path.
	Role Role
	// Fixed: relayed for the whole run, never given (UDP without
	// --direct-udp).
	Fixed bool
}

// Listens reports whether the socket takes connections before the server
// has it: every socket but a family socket.
func (p Published) Listens() bool { return p.Role != RoleFamily }

// is4 reports whether the socket is an AF_INET socket (a catch-all is
// always AF_INET6, also on a v4-mapped address).
func (p Published) is4() bool { return p.Host.Addr().Is4() }

type handoverSocket struct {
	Published
	state     HandoverState
	target    int // Forwarded: the Given socket it is relayed to
	reusePort bool
}

// NewHandover starts with every host socket Waiting, but Fixed ones
// Relayed.
func NewHandover(socks []Published) *Handover {
	h := &Handover{socks: make([]handoverSocket, len(socks))}
	for i, p := range socks {
		h.socks[i] = handoverSocket{Published: p, target: -1}
		if p.Fixed {
			h.socks[i].state = Relayed
		}
	}
	return h
}

// BindRequest is one bind(2) of the server.
type BindRequest struct {
	Proto Proto
	// Addr is the address the server asked for; its family is that of
	// the server's socket (a 16-byte address for an IPv6 socket).
	Addr netip.AddrPort
	// ReusePort is true when the server set SO_REUSEPORT before the bind.
	ReusePort bool
	// V6Only is IPV6_V6ONLY of an IPv6 socket.
	V6Only bool
}

// Decision is what to do with one bind.
type Decision struct {
	// Give is the host socket for the server; -1 lets the bind continue
	// inside.
	Give int
	// From is the state Give is in now: Relayed means stopping the
	// helper's relay first, Forwarded taking it back from the host relay.
	From HandoverState
	// Relay lists host sockets to relay inside, to the socket the bind
	// makes there.
	Relay []int
	// Forward lists host sockets to relay on the host to Give.
	Forward []int
	// Why says why, for debug logs.
	Why string
}

// State is the state of host socket i.
func (h *Handover) State(i int) HandoverState { return h.socks[i].state }

// Target is the host socket that Forwarded socket i is relayed to.
func (h *Handover) Target(i int) int { return h.socks[i].target }

// Socket is host socket i.
func (h *Handover) Socket(i int) Published { return h.socks[i].Published }

// Len is the number of host sockets.
func (h *Handover) Len() int { return len(h.socks) }

// Group lists the host sockets of proto and inside port.
func (h *Handover) Group(proto Proto, port uint16) []int {
	var group []int
	for i, s := range h.socks {
		if s.Proto == proto && s.Inside == port {
			group = append(group, i)
		}
	}
	return group
}

// tiers are the host sockets of group a bind of req may get, best kind
// first.
func (h *Handover) tiers(group []int, req BindRequest) [][]int {
	a := req.Addr.Addr()
	kinds := func(match ...func(Published) bool) [][]int {
		out := make([][]int, len(match))
		for _, i := range group {
			for k, m := range match {
				if m(h.socks[i].Published) {
					out[k] = append(out[k], i)
					break
				}
			}
		}
		return out
	}
	plain := func(four bool) func(Published) bool {
		return func(p Published) bool { return p.Role == RolePlain && p.is4() == four }
	}
	family := func(four bool) func(Published) bool {
		return func(p Published) bool { return p.Role == RoleFamily && p.is4() == four }
	}
	catchAll := func(p Published) bool { return p.Role == RoleCatchAll }
	switch {
	case a.Is4():
		return kinds(family(true), plain(true))
	case a.IsUnspecified() && !req.V6Only:
		return kinds(catchAll, plain(false))
	}
	// IPv6 only: [::] with IPV6_V6ONLY, or ::1; a catch-all of IPv4
	// clients only (0.0.0.0, one IPv4 address) has nothing for it.
	v6CatchAll := func(p Published) bool { return catchAll(p) && !p.Host.Addr().Is4In6() }
	return kinds(family(false), v6CatchAll, plain(false))
}

// Decide decides for req. inUse(i) reports whether a process still holds
// Given host socket i; it is called only when that matters.
func (h *Handover) Decide(req BindRequest, inUse func(int) bool) Decision {
	port := req.Addr.Port()
	group := h.Group(req.Proto, port)
	if port == 0 || len(group) == 0 {
		return Decision{Give: -1, Why: "not published"}
	}
	for _, i := range group {
		if h.socks[i].Fixed {
			return Decision{Give: -1, Why: "relayed for the whole run"}
		}
	}
	a := req.Addr.Addr()
	if a.Is4In6() || !(a.IsUnspecified() || a.IsLoopback()) {
		return h.inside(group, "not a wildcard or loopback address")
	}
	best, why := -1, ""
	for _, tier := range h.tiers(group, req) {
		bestRank := 0
		for _, i := range tier {
			s := h.socks[i]
			var rank int
			switch s.state {
			case Waiting:
				rank = 4
			case Relayed:
				rank = 3
			case Forwarded:
				rank = 2
			case Given:
				if req.ReusePort && s.reusePort {
					rank = 1
				}
			}
			if rank > bestRank {
				best, bestRank = i, rank
			}
		}
		if best < 0 {
			// Only host sockets the server holds are left of this kind:
			// give one again if the server let go of it.
			for _, i := range tier {
				if h.socks[i].state == Given && !inUse(i) {
					best, why = i, "given again: no process holds it"
					break
				}
			}
		}
		if best >= 0 {
			break
		}
	}
	if best < 0 {
		return h.inside(group, "no free host socket of the family")
	}
	d := Decision{Give: best, From: h.socks[best].state, Why: why}
	if d.Why == "" {
		d.Why = "host socket " + h.socks[best].state.String()
	}
	for _, i := range group {
		if i != best && h.socks[i].state == Waiting && h.socks[i].Listens() {
			d.Forward = append(d.Forward, i)
		}
	}
	return d
}

// Inside is the decision for a bind to port of proto that continues
// inside: the host sockets of that port nobody serves are relayed to it.
// The caller uses it when giving a host socket failed.
func (h *Handover) Inside(proto Proto, port uint16, why string) Decision {
	return h.inside(h.Group(proto, port), why)
}

func (h *Handover) inside(group []int, why string) Decision {
	d := Decision{Give: -1, Why: why}
	for _, i := range group {
		if h.socks[i].state == Waiting && h.socks[i].Listens() {
			d.Relay = append(d.Relay, i)
		}
	}
	return d
}

// Record records that d was carried out; reusePort is the SO_REUSEPORT of
// the server's socket, which the given host socket now has too.
func (h *Handover) Record(d Decision, reusePort bool) {
	for _, i := range d.Relay {
		h.socks[i].state = Relayed
	}
	if d.Give < 0 {
		return
	}
	g := &h.socks[d.Give]
	g.state, g.target = Given, -1
	g.reusePort = g.reusePort || reusePort
	for _, i := range d.Forward {
		h.socks[i].state, h.socks[i].target = Forwarded, d.Give
	}
}

// AddrDialer dials a fixed address: it relays a host socket the server did
// not take to the host socket it did take (Forwarded), on the host, for TCP
// and UDP.
type AddrDialer struct {
	Addr netip.Addr
}

// DialTCP implements Dialer.
func (d AddrDialer) DialTCP(ctx context.Context, _ netip.AddrPort, port uint16) (*net.TCPConn, error) {
	var nd net.Dialer
	// The relay splices; an MPTCP socket cannot.
	nd.SetMultipathTCP(false)
	c, err := nd.DialContext(ctx, "tcp", netip.AddrPortFrom(d.Addr, port).String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// DialAddr is the address to dial to reach a host socket bound to host:
// the loopback address of its family when it listens on the wildcard.
func DialAddr(host netip.AddrPort) netip.AddrPort {
	a := host.Addr().Unmap()
	if a.IsUnspecified() {
		if a.Is4() {
			a = loopback4
		} else {
			a = loopback6
		}
	}
	return netip.AddrPortFrom(a, host.Port())
}

// DialUDP implements PacketDialer: a socket connected to the fixed address
// and the port of server (the relay's choice of family does not matter:
// there is one host socket to reach).
func (d AddrDialer) DialUDP(ctx context.Context, _, server netip.AddrPort) (*net.UDPConn, error) {
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(d.Addr, server.Port())))
}
