// Command nsbind runs a server that wants a privileged port without root:
// the server starts in a new user and network namespace, where it may bind
// any port, and nsbind publishes that port on the host.
//
// This package is the binary's front: the command tree (cli.go: one cobra
// definition per command, which is its parsing, help and completion, and
// the man page of man.go), the flags of run and doctor, the
// dispatch on argv[0] to the role of a process nsbind started itself
// (main.go: the helper and the exec step of internal/helper, the probe of
// doctor), doctor's checks and output (doctor_linux.go, diagnose_linux.go)
// and the hints that turn a known error into a remedy (hints.go), and the
// instance commands ps, port, exec, stats and stop (instances_linux.go),
// clients of a run's control socket (internal/instance). The run itself
// is internal/parent's.
//
// Processes: run, doctor and the hints run in nsbind's own process on the
// host; probeMain runs in the probe, inside fresh namespaces.
//
// Concurrency: everything here runs on the main goroutine; run(args,
// stdout, stderr) keeps no state between calls, so tests call it
// in-process.
package main
