package helper

import (
	"log/slog"
	"os"
	"runtime/pprof"
)

// startProfile starts a CPU profile of the helper (the relays) into path,
// for work on the hot path (README, Performance), and returns the function
// that writes it; nil when path is "" or the profile cannot start.
func startProfile(path string, logger *slog.Logger) func() {
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
