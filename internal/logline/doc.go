// Package logline writes nsbind's log lines: "nsbind: message key=value",
// with "debug: ", "warning: " or "error: " after the prefix for those
// levels, as a log/slog handler.
//
// Processes: the parent and the helper each make their logger with New on
// a Writer on their stderr (the helper's is the terminal nsbind runs on).
// The Writer keeps a stderr that stalls (a pipe nobody reads) or is closed
// from holding up a relay: it queues lines, drops what does not fit or
// cannot be written, and counts it.
//
// Concurrency: a logger and the loggers made from it With may be used from
// any goroutine; each line is written whole. A Writer may be written from
// any goroutine; one goroutine of its own writes to the output.
package logline
