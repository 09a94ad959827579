// Package forward knows sockets and bytes: it parses port specs, binds the
// host sockets they ask for, and relays TCP connections and UDP datagrams
// between those sockets and the server inside the namespace.
//
// Process: Bind runs in nsbind's parent process, in the host's network
// namespace, so the sockets belong to the host. The relays (TCPRelay) run in
// the helper inside the namespace, on sockets inherited from the parent:
// they accept host connections and dial the server through a Dialer, which
// connects inside because the helper lives there.
//
// With --direct (handover.go, sockopt_linux.go) the helper gives the server
// the host sockets themselves: Handover decides which bind gets which, and
// SocketOptions carries the server's options over. nsbind's parent relays,
// on the host, a host socket the server did not take to one it took
// (AddrDialer). A Handover belongs to one goroutine.
//
// Concurrency: Serve runs on one goroutine per host socket and starts two
// goroutines per TCP connection, one per direction. Serve returns only after
// every connection goroutine has ended. Stats may be read from any goroutine.
// forward never imports nsutil; cmd/nsbind wires the two together.
package forward
