// Package logline writes nsbind's log lines: "nsbind: message key=value",
// with "debug: ", "warning: " or "error: " after the prefix for those
// levels, as a log/slog handler.
//
// Processes: the parent and the helper each make their logger with New on
// their stderr (the helper's is the terminal nsbind runs on).
//
// Concurrency: a logger and the loggers made from it With may be used from
// any goroutine; each line is written whole.
package logline
