// Package forward knows sockets and bytes: it parses port specs, binds the
// host sockets they ask for, and relays TCP connections and UDP datagrams
// between those sockets and the server inside the namespace.
//
// Process: Bind runs in nsbind's parent process, in the host's network
// namespace, so the sockets belong to the host. The relays (TCPRelay,
// UDPRelay) run in the helper inside the namespace, on sockets inherited
// from the parent: they take host connections and datagrams and reach the
// server through a Dialer or PacketDialer, which connects inside because the
// helper lives there.
//
// Outbound, the other way round: NewHostSockets runs in the parent and
// makes unconnected host sockets; the helper keeps them in a SocketPool and
// connects them itself, so Outbound (TCP) and UDPOutbound reach the world
// with the host's routing and see the host's errors.
//
// With --direct (handover.go, sockopt_linux.go) the helper gives the server
// the host sockets themselves: Handover decides which bind gets which, and
// SocketOptions carries the server's options over. nsbind's parent relays,
// on the host, a host socket the server did not take to one it took
// (AddrDialer). A Handover belongs to one goroutine.
//
// Concurrency: Serve runs on one goroutine per host socket. A TCP connection
// gets two goroutines, one per direction. A UDP flow (one client address)
// gets one goroutine that reads the server's replies; the Serve goroutine
// itself reads the host socket and sends to the flows. An outbound UDP
// flow's goroutine first opens its host socket, so that the Serve goroutine
// never waits for the pool or a connect. Both keep their flows in a
// flowTable (idle timeout, bound, eviction of the flow idle longest).
// Serve returns only after every connection or flow goroutine has ended.
// Stats may be read from any goroutine. Outbound.Dial and Serve, UDPOutbound's Serve methods and
// every SocketPool method may run on any goroutines.
// forward never imports nsutil; internal/parent and internal/helper wire
// the two together.
package forward
