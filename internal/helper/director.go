package helper

import (
	"github.com/nsbind/nsbind/forward"
)

// The native path (the default; --direct): the server gets the host socket itself at its bind(2), so it
// accepts host connections with no relay and sees the real client
// addresses (fact 6 of DESIGN.md). The exec step traps bind with a seccomp
// filter (nsutil/seccomp_linux.go); the director answers each trapped
// bind (director_linux.go) as forward.Handover decides; the handovers
// below carry the decisions out through hostSockets and record only what
// worked; the parent relays, on the host, the host sockets the server did
// not take to the one it took (internal/parent, hostrelays_linux.go),
// because only a socket made on the host can reach it.

// hostSockets is what the director does with the published host sockets
// (director_linux.go with real sockets and the control channel; the tests
// record the calls).
type hostSockets interface {
	// relay starts the helper's relay of host socket i to the server's
	// socket inside and returns the function that stops it.
	relay(i int) (stop func(), err error)
	// forward has the parent relay host socket i on the host to host
	// socket target, which the server has.
	forward(i, target int) error
	// takeBack has the parent stop relaying host socket i on the host,
	// and returns once it has (or gave up waiting).
	takeBack(i int)
	// inUse reports whether a process other than the helper holds host
	// socket i: the server, when it has not closed the socket it got.
	inUse(i int) bool
}

// handovers decides what to do with each of the server's binds of a
// published port (forward.Handover) and carries it out through do. It is
// used from the director's bind loop only.
type handovers struct {
	h  *forward.Handover
	do hostSockets
	// stops[i] stops the helper's relay of host socket i while it is
	// Relayed.
	stops []func()
	// failed is called for each step that could not be carried out.
	failed func(what string, i int, err error)
}

func newHandovers(pub []forward.Published, do hostSockets, failed func(string, int, error)) *handovers {
	return &handovers{h: forward.NewHandover(pub), do: do, stops: make([]func(), len(pub)), failed: failed}
}

// decide is the decision for req.
func (s *handovers) decide(req forward.BindRequest) forward.Decision {
	return s.h.Decide(req, s.do.inUse)
}

// release frees dec.Give for the server: the helper's relay of it stops
// (connections it carries stop reading from their clients, the relay's end
// of shutdown; this happens only when the server binds the other family
// after one that continued inside), or the parent's relay of it on the
// host ends.
func (s *handovers) release(dec forward.Decision) {
	i := dec.Give
	switch dec.From {
	case forward.Relayed:
		if stop := s.stops[i]; stop != nil {
			stop()
			s.stops[i] = nil
		}
	case forward.Forwarded:
		s.do.takeBack(i)
	}
}

// carryOut starts the relays dec asks for and records it, with only the
// relays that did start: a host socket whose relay failed stays Waiting
// (a later bind may take it), never Relayed without a relay.
func (s *handovers) carryOut(dec forward.Decision, reusePort bool) {
	var relayed, forwarded []int
	for _, i := range dec.Relay {
		stop, err := s.do.relay(i)
		if err != nil {
			s.failed("relay not started", i, err)
			continue
		}
		s.stops[i] = stop
		relayed = append(relayed, i)
	}
	for _, i := range dec.Forward {
		if err := s.do.forward(i, dec.Give); err != nil {
			s.failed("relay not started", i, err)
			continue
		}
		forwarded = append(forwarded, i)
	}
	dec.Relay, dec.Forward = relayed, forwarded
	s.h.Record(dec, reusePort)
}

// inside is the decision for a bind of port that continues inside after
// all (giving a host socket failed): the port's waiting host sockets are
// relayed to it.
func (s *handovers) inside(proto forward.Proto, port uint16, why string) {
	s.carryOut(s.h.Inside(proto, port, why), false)
}

// relayWaiting relays every listening host socket still waiting: the
// native path is not available, and the run goes on with the relay. (A
// catch-all takes the clients of both families; a family socket never
// listens then, so it gets none.)
func (s *handovers) relayWaiting() {
	var dec forward.Decision
	dec.Give = -1
	for i := range s.stops {
		if s.h.State(i) == forward.Waiting && s.h.Socket(i).Listens() {
			dec.Relay = append(dec.Relay, i)
		}
	}
	s.carryOut(dec, false)
}

// relayFixed starts the relays of the host sockets relayed for the whole
// run (UDP without --direct-udp), which the handover holds Relayed from
// the start.
func (s *handovers) relayFixed() {
	for i := range s.stops {
		if !s.h.Socket(i).Fixed {
			continue
		}
		stop, err := s.do.relay(i)
		if err != nil {
			s.failed("relay not started", i, err)
			continue
		}
		s.stops[i] = stop
	}
}
