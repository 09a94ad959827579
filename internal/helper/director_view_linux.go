package helper

import (
	"context"
	"net"
	"net/netip"

	"github.com/nsbind/nsbind/forward"
)

// The inside view of the native path. A server that has its port's host
// socket listens on nothing inside, so a program inside that connects to
// the server's own port on 127.0.0.1 or ::1 (a health check, a script's
// curl localhost, nginx proxying to itself) would be refused. Once the
// server has a host socket of a port, the helper listens inside on the
// loopback address of each family the server took and relays each
// connection to the host socket, through a host socket from the outbound
// pool (a socket made on the host reaches the host's loopback, fact 3 of
// DESIGN.md); the server sees such clients coming from the host's
// loopback. The bind loop alone calls start.
type views struct {
	d *director
	// on records the views listening, per inside port and family.
	on map[viewKey]bool
}

type viewKey struct {
	port uint16
	four bool
}

func newViews(d *director) *views { return &views{d: d, on: make(map[viewKey]bool)} }

// start starts the views of the families host socket i takes, before
// the server gets it (so that they listen when the server's bind returns),
// and returns the function that stops them again, for a handover that
// failed.
func (v *views) start(i int) (undo func()) {
	d := v.d
	h := d.handovers.h
	s := h.Socket(i)
	pool := d.out.hostPool()
	var started []viewKey
	ctx, cancel := context.WithCancel(d.ctx)
	undo = func() {
		cancel()
		for _, k := range started {
			delete(v.on, k)
		}
	}
	if pool == nil || s.Proto != forward.TCP {
		return undo
	}
	var fours []bool
	a := s.Host.Addr()
	switch {
	case s.Role == forward.RoleCatchAll && a.Is4In6():
		fours = []bool{true}
	case s.Role == forward.RoleCatchAll:
		fours = []bool{true, false}
	default:
		fours = []bool{a.Is4()}
	}
	dialer := forward.HostDialer{Pool: pool}
	dialer.To4, dialer.To6 = v.targets(h.Group(s.Proto, s.Inside))
	for _, four := range fours {
		k := viewKey{s.Inside, four}
		if v.on[k] {
			continue
		}
		at, network := netip.AddrPortFrom(localhost6, s.Inside), "tcp6"
		if four {
			at, network = netip.AddrPortFrom(localhost4, s.Inside), "tcp4"
		}
		var lc net.ListenConfig
		lc.SetMultipathTCP(false) // the relay splices; MPTCP sockets cannot
		ln, err := lc.Listen(ctx, network, at.String())
		if err != nil {
			d.logger.Debug("no inside view of the server's host socket", "at", at, "err", err)
			continue
		}
		v.on[k] = true
		started = append(started, k)
		r := &forward.TCPRelay{Port: s.Host.Port(), Dialer: dialer, Wait: d.cfg.ConnectTimeout, Logger: d.logger, Stats: d.stats[i]}
		tl := ln.(*net.TCPListener)
		d.logger.Debug("inside view of the server's host socket", "at", at, "host", s.Host)
		d.serve(ctx, d.cfg.Sockets[i], func(ctx context.Context) error { return r.Serve(ctx, tl) })
	}
	return undo
}

// targets are the host addresses that reach the server's sockets of group,
// per family (invalid when the group has none of that family: the view
// then dials the other).
func (v *views) targets(group []int) (to4, to6 netip.Addr) {
	h := v.d.handovers.h
	for _, j := range group {
		s := h.Socket(j)
		a := forward.DialAddr(s.Host).Addr()
		switch {
		case s.Role == forward.RoleCatchAll && s.Host.Addr().Is4In6():
			if !to4.IsValid() {
				to4 = a
			}
		case s.Role == forward.RoleCatchAll:
			if !to4.IsValid() {
				to4 = netip.AddrFrom4([4]byte{127, 0, 0, 1})
			}
			if !to6.IsValid() {
				to6 = a
			}
		case a.Is4():
			to4 = a
		default:
			to6 = a
		}
	}
	return to4, to6
}
