package parent

import (
	"log/slog"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// supplySockets is the parent's part of outbound connections: it makes
// unconnected host sockets when the helper asks and sends them over.
// Sockets made ahead, in batches, and connected by the helper itself cost
// no round trip per connection, and connect() in the helper returns the
// host's own error, which the helper turns into the same error inside
// (internal/helper, outbound_linux.go).
func supplySockets(ctrl *nsutil.Ctrl, m nsutil.WantSockets, logger *slog.Logger) {
	kind := forward.SocketKind(m.Kind)
	n := min(max(m.N, 1), nsutil.MaxFiles)
	files, err := forward.NewHostSockets(kind, n)
	if err != nil {
		logger.Debug("making host sockets for outbound connections", "err", err)
	}
	// An answer without sockets still tells the helper to ask again.
	ctrl.Send(nsutil.Sockets{Kind: m.Kind}, files...)
	closeAll(files)
}
