// Package parent is nsbind run's own process, on the host, with the user's
// uid: the parent of the helper.
//
// Run's order: it takes the sockets socket activation passed it
// (LISTEN_FDS, activation_linux.go), checks the specs and the command,
// binds every host socket no inherited socket serves (forward.Bind; a busy
// or forbidden port fails before anything starts), starts the helper in new namespaces (nsutil.Start,
// helper_linux.go) and sends it its configuration as the first message on
// the control channel, makes the veth pair with --net=veth (veth_linux.go),
// and then watches the helper (watch_linux.go): it passes signals on,
// hands the terminal back and forth (terminal_linux.go), supplies
// unconnected host sockets for outbound connections (sockets_linux.go),
// relays on the host what --direct asks for (hostrelays_linux.go), prints
// the published sockets, writes the --ports-file (portsfile.go), prints
// --stats (stats.go), describes the helper's failures with the host's
// facts, and returns the exit status. Under its name (--name) it answers
// nsbind ps, port, exec, stats and stop (instance_linux.go).
//
// Concurrency: Run runs on the caller's goroutine; one goroutine receives
// from the control channel and hands what is not answered at once to
// Run's loop. The host relays run on goroutines of their own; their table
// is guarded by a mutex. The instance commands are answered on the
// control socket's goroutines, several at once (their state has its own
// mutexes); the receive goroutine hands them the helper's answers.
package parent
