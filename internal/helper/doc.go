// Package helper is nsbind's helper: the process that runs inside the new
// user and network namespaces (argv[0] nsutil.RoleInit, started by
// internal/parent) and the exec step it starts to become the server
// (nsutil.RoleExec).
//
// The helper's life, in Main's order: it receives its configuration as
// the first message on the control channel (main_linux.go), sets up the
// namespace, starts the relays of the published host sockets it inherited
// (relay_linux.go), the way out for outbound connections (outbound_linux.go,
// whose per-SYN loop gives each held SYN the verdict of verdict.go), and,
// with --direct, the director that answers the server's trapped bind(2)
// calls (director.go decides, director_linux.go does). It then starts the
// server through the exec step (exec_linux.go; with --socket-activation it
// hands the server the host sockets at 3.., activation_linux.go), supervises it
// (supervise_linux.go), and when the server ends sends the counters
// (stats.go) and the exit status to the parent.
//
// Concurrency: Main runs the setup on the main goroutine and then the
// supervision loop there; one goroutine receives from the control channel
// and hands the messages to the loop (host sockets go straight to the
// outbound pool). Relays, the outbound listeners and the per-SYN loop run
// on goroutines counted in one WaitGroup and end with one context. The
// director's bind loop runs on one goroutine of its own and alone touches
// its handover state; gotUnrelayed may be called from any goroutine. The
// exec step runs on one locked thread (nsutil.ExecServer). The requests
// of the instance commands (instance_linux.go: ports added and removed,
// the counters now, commands run beside the server) are taken on the
// receive goroutine; each exec'd command is waited for on a goroutine of
// its own.
package helper
