// Package nsutil knows namespaces and processes: it starts nsbind's helper
// in new user, network, PID and mount namespaces (start_linux.go), sets the
// namespace up from inside (init_linux.go), runs the server through the exec
// step that drops every capability (exec_linux.go), supervises it
// (supervise_linux.go), carries messages between nsbind and its helper
// (ctrl_linux.go), and reads the host's settings and probes fresh
// namespaces for nsbind doctor (probe_linux.go). A host refusing a step of
// creating or setting up the namespaces is a *NamespaceError.
//
// Processes: Start, ReadHostFacts and Probe run in nsbind's parent on the
// host. SetupLoopback, MountProc, StartServer and the Server methods run in
// the helper, inside the namespaces; ProbeInside in the probe, which Probe
// starts exactly as Start starts the helper. ExecServer runs in the exec step, the short-lived process
// that becomes the server.
//
// Concurrency: Start forks from a goroutine locked to its thread for the
// helper's whole life (Go's Pdeathsig is tied to the forking thread).
// Ctrl.Send may be called from any goroutine, Ctrl.Recv from one at a time.
// After StartServer the calling process reaps all its children on its own
// goroutine and must start no other child process. ExecServer works on one
// locked thread, because capabilities and no_new_privs are per thread.
//
// nsutil never imports forward: cmd/nsbind hands forward the sockets.
package nsutil
