// Package nsutil knows namespaces and processes: it starts nsbind's helper
// in new user, network, PID and mount namespaces (start_linux.go), sets the
// namespace up from inside (init_linux.go), runs the server through the exec
// step that drops every capability (exec_linux.go), supervises it
// (supervise_linux.go), holds the control protocol between nsbind's
// processes, every message in one table (ctrl.go), and, for --direct, traps the server's bind(2) with a
// seccomp filter whose listener the helper answers (seccomp_linux.go). With
// --net=veth (privileged) it also makes the run's veth pair (veth_linux.go)
// and the run's nftables table on the host (hostrules_linux.go). It reads
// the host's settings and probes fresh namespaces for nsbind doctor
// (probe_linux.go). A host refusing a step of creating or setting up the
// namespaces is a *NamespaceError.
//
// --net=veth: CheckHostNetAdmin, LockSubnets, ChooseSubnets, CreateVeth,
// HostForwarding, InstallHostRules, DeleteVeth and ProbeVeth run in the
// parent on the host; SetupVethInside runs in the helper. A HostTable must
// stay open (in the parent) for the run's whole life: the kernel deletes
// the table when its netlink socket closes.
//
// Processes: Start, ReadHostFacts and Probe run in nsbind's parent on the
// host. SetupLoopback, MountProc, StartServer and the Server methods run in
// the helper, inside the namespaces, and so do SetupOutbound,
// SetupReplyRouting, OpenQueue, BindResolvConf, ReceiveBindListener and the
// BindListener; ProbeInside runs in the probe, which Probe starts exactly as
// Start starts the helper. ProbeOutbound runs in any process with
// CAP_NET_ADMIN in its user namespace (the helper, or the probe).
// ExecServer runs in the exec step, the short-lived process that becomes
// the server, and installs the bind filter there; Confine runs there too
// (called by ExecServer), and so does the Landlock signal scoping.
//
// Concurrency: Start forks from a goroutine locked to its thread for the
// helper's whole life (Go's Pdeathsig is tied to the forking thread).
// Ctrl.Send may be called from any goroutine, Ctrl.Recv from one at a time.
// Queue.Next is called from one goroutine, Queue.Verdict from any.
// After StartServer the calling process reaps all its children on its own
// goroutine and must start no other child process. ExecServer works on one
// locked thread, because capabilities, no_new_privs, seccomp filters,
// Landlock domains and Confine's mount namespace are per thread. BindListener.Next is called from one goroutine at a time; its
// answers (Continue, Replace...) and Close from any.
//
// The control protocol (ctrl.go) and the errors that cross it (errors.go)
// build anywhere; the rest is Linux only.
//
// nsutil never imports forward: internal/parent and internal/helper hand
// forward the sockets.
package nsutil
