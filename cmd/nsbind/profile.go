package main

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// profileEnv names a file the helper writes a CPU profile of the relays to
// (go tool pprof FILE), for work on the hot path; see README, Performance.
// nsbind's own variables never reach the server.
const profileEnv = "NSBIND_CPUPROFILE"

// startProfile starts the CPU profile profileEnv asks for and returns the
// function that writes it, or nil.
func startProfile(logger *slog.Logger) func() {
	path := os.Getenv(profileEnv)
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		logger.Warn("no CPU profile", "err", err)
		return nil
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		logger.Warn("no CPU profile", "err", err)
		f.Close()
		return nil
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
