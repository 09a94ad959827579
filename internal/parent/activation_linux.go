package parent

import (
	"os"

	"github.com/nsbind/nsbind/forward"
)

// takeInherited takes the sockets that socket activation passed to nsbind
// (systemd behind a .socket unit, or systemd-socket-activate): LISTEN_FDS
// sockets at descriptors 3.., meant for nsbind when LISTEN_PID is its own
// pid (forward.Inherited, which also makes them close-on-exec). It runs
// first in Run, before nsbind opens any descriptor of its own, so nothing
// can have been put at 3.. in between.
//
// LISTEN_* then leave nsbind's environment whatever they said, as
// sd_listen_fds(unset_environment=1) does: the helper inherits nsbind's
// environment and the server the helper's, and a server that speaks the
// protocol would otherwise take its own descriptors 3.. for sockets. Only
// --socket-activation gives the server LISTEN_* again, its own.
func (r *run) takeInherited() error {
	socks, err := forward.Inherited(os.Environ(), os.Getpid())
	for _, k := range []string{forward.EnvListenPID, forward.EnvListenFDs, forward.EnvListenFDNames} {
		os.Unsetenv(k)
	}
	if err != nil {
		return err
	}
	for _, a := range socks {
		r.Logger.Debug("inherited socket", "socket", a.String())
	}
	r.inherited = socks
	return nil
}

// bindPublished makes the host sockets of the run: the inherited sockets
// claim the publications they match (forward.Claim, whose doc says how),
// Bind binds the rest. Both are host sockets alike from here on: the relay,
// --direct and --socket-activation serve them the same way. An inherited
// socket that no -p claims fails the run before anything starts
// (*forward.UnclaimedError, exit 125): connections to it would wait in its
// backlog with nobody to accept them.
func (r *run) bindPublished() ([]forward.HostSocket, error) {
	// The configuration is made in plan; --socket-activation only needs
	// saying to the helper once there are sockets to hand over.
	r.cfg.SocketActivation = r.SocketActivation
	claimed, rest, err := forward.Claim(r.bindings, r.inherited)
	if err != nil {
		r.closeInherited()
		return nil, err
	}
	r.inherited = nil
	bound, err := forward.Bind(rest, r.cfg.Direct, r.Logger)
	if err != nil {
		forward.CloseAll(claimed)
		return nil, err
	}
	return append(claimed, bound...), nil
}

// closeInherited closes the inherited sockets (a run that fails before
// they were claimed).
func (r *run) closeInherited() {
	for _, a := range r.inherited {
		a.File.Close()
	}
	r.inherited = nil
}
