// Package doctor is nsbind doctor's checks and the diagnosis of a host
// that refuses nsbind's namespaces. Run reads the host's facts, starts the
// probe (nsbind itself in the nsutil.RoleProbe role, ProbeMain) in fresh
// namespaces exactly as run starts its helper, and turns both into one
// Check a line (doctor_linux.go); Print writes them as doctor prints them,
// and cmd/nsbind prints the Report as JSON for --json. A namespace step the
// host refused (an *nsutil.NamespaceError) is diagnosed by its errno and
// the host facts (diagnose_linux.go): the same Diagnosis is doctor's line
// and, through Describe, the one line nsbind run prints when it fails for
// that reason, so the two always agree.
//
// Processes: Run, Print and Describe run in the CLI's process on the host
// (nsbind doctor, or nsbind run describing its failure); ProbeMain runs in
// the probe, inside the fresh namespaces, and reports over its control
// channel.
//
// Concurrency: Run blocks until the probe has reported and ended; nothing
// here keeps state, so any function may be called from any goroutine.
package doctor
