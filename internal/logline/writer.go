package logline

import (
	"fmt"
	"io"
	"sync"
	"time"
)

// queueBytes bounds what a Writer holds while its output does not keep up:
// a few thousand debug lines.
const queueBytes = 256 << 10

// Writer passes what is written to it on to an output (the process's
// stderr) from a goroutine of its own, so that a write never waits for the
// output. nsbind's stderr is the user's: a pipe nobody reads, a terminal
// stopped with Ctrl-S or a closed pipe must not hold up or end a relay.
// What does not fit in the queue, or cannot be written, is dropped and
// counted; a line says how many once the output takes lines again.
type Writer struct {
	out io.Writer

	mu      sync.Mutex // guards the fields below
	queue   [][]byte
	queued  int // bytes in queue
	dropped int // writes dropped since the last report
	closed  bool
	wake    chan struct{} // one pending wake-up for drain
	done    chan struct{} // closed when drain has returned
}

// NewWriter starts a Writer on out. Close it to flush it.
func NewWriter(out io.Writer) *Writer {
	w := &Writer{out: out, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go w.drain()
	return w
}

// Write queues a copy of p, or drops it when the queue is full or the
// Writer closed. It never waits for the output and never fails.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	if w.closed || w.queued+len(p) > queueBytes {
		w.dropped++
		w.mu.Unlock()
		return len(p), nil
	}
	w.queue = append(w.queue, append([]byte(nil), p...))
	w.queued += len(p)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Dropped is the number of writes dropped and not reported yet.
func (w *Writer) Dropped() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// Close stops taking writes and waits up to wait for what is queued (and
// the count of what was dropped) to be written. It reports whether all
// was; after it the Writer drops every write.
func (w *Writer) Close(wait time.Duration) bool {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

// drain writes what is queued, in order, until the Writer is closed and
// its queue empty. It is the one goroutine that writes to the output, and
// the only one a stalled output holds up.
func (w *Writer) drain() {
	defer close(w.done)
	for {
		w.mu.Lock()
		queue, closed := w.queue, w.closed
		w.queue, w.queued = nil, 0
		w.mu.Unlock()
		failed := 0
		for _, b := range queue {
			if _, err := w.out.Write(b); err != nil {
				failed++
			}
		}
		w.mu.Lock()
		w.dropped += failed
		caughtUp := len(w.queue) == 0
		dropped := 0
		if w.dropped > 0 && (caughtUp && failed < len(queue) || closed) {
			// The output takes lines again and has all that was kept,
			// or this is the end: say what it missed.
			dropped, w.dropped = w.dropped, 0
		}
		w.mu.Unlock()
		if dropped > 0 {
			w.out.Write(fmt.Appendf(nil, "nsbind: warning: %d of nsbind's log lines were dropped: its stderr did not take them\n", dropped))
		}
		if closed {
			return
		}
		if caughtUp {
			<-w.wake
		}
	}
}
