// Command nsbind runs a server that wants a privileged port without root:
// the server starts in a new user and network namespace, where it may bind
// any port, and nsbind publishes that port on the host.
//
// This package is the binary's front, wiring only: the command tree
// (cli.go: one cobra definition per command, which is its parsing, help
// and completion; the help and the man page are written from it by
// internal/helptext and internal/manpage), the flags of run and the checks
// of their values (run_linux.go, veth.go), the dispatch on argv[0] to the
// role of a process nsbind started itself (main.go: the helper and the
// exec step of internal/helper, the probe of internal/doctor), doctor's
// command and output format (doctor_linux.go; the checks are
// internal/doctor's; the hints that turn a known error into a remedy are
// internal/hints's), and the flags and arguments of the instance
// commands ps, port, exec, stats and stop (instances_linux.go; their client
// side is internal/instancecli). The run itself is internal/parent's.
//
// Processes: everything here runs in nsbind's own process on the host.
//
// Concurrency: everything here runs on the main goroutine; run(args,
// stdout, stderr) keeps no state between calls, so tests call it
// in-process.
package main
