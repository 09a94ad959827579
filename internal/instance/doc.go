// Package instance names running nsbind instances and lets the short-lived
// commands `nsbind ps|port|exec|stats|stop` talk to them over a unix socket.
//
// Processes. The server side (Listen, Server.Serve) runs in the nsbind
// parent of a run, on the host: it holds the run's name as the socket
// NAME.sock in the user's directory and answers requests through the
// Handler the parent implements (which forwards exec to the helper over
// its control channel). The client side (Dial, Client, List) runs in the
// CLI commands, each of which connects, asks, and exits. Neither runs in
// the helper or the server.
//
// The directory (dir_linux.go) is $XDG_RUNTIME_DIR/nsbind, or /tmp/nsbind-UID
// when XDG_RUNTIME_DIR is unset or not the user's alone; UID is the uid
// outside our user namespace (/proc/self/uid_map), so a run in a nested
// namespace uses its owner's directory, not that of its uid 0. It is mode 0700
// and owned by the user, checked on the open directory (never through a
// symlink); one that fails the checks is refused, not repaired, except
// right after this package made it. Root's List and Dial also look in
// /run/user/UID/nsbind and /tmp/nsbind-UID of every other UID, trusting
// each only if that UID owns it.
//
// A name is taken by binding NAME.sock, which is atomic: EADDRINUSE means
// the file exists, and a connect says whether a live run holds it or it is
// the socket of a dead one (ECONNREFUSED; SIGKILL leaves one), which is
// removed under the directory's flock and the bind retried. List and Dial
// remove the stale sockets they meet the same way. Close (and the end of
// Serve) removes the socket, and the directory when it is empty: nothing
// outlives the run.
//
// Every connection is checked with SO_PEERCRED: only the server's own uid
// and root are served; anyone else gets an error frame and is closed.
// proto.go has the messages and who sends which.
//
// Concurrency: Serve runs on one goroutine and starts one goroutine per
// connection, plus one per running exec that waits for the process; it
// returns after all of them. Close may be called from any goroutine. The
// Handler's methods are called from connection goroutines, several at
// once. A Client's methods may be called from any goroutine (they take
// turns); an Exec's Signal may be called while Wait runs.
package instance
