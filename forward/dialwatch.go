package forward

import (
	"context"
	"time"
)

// Bounds of the inside dial of a relayed TCP connection.
const (
	// minDialWait bounds a dial when the relay waits for no server
	// (--connect-timeout 0): one attempt, but not an unbounded one.
	minDialWait = time.Second
	// watchClientAfter is how long a dial runs before the relay starts
	// checking whether its client is still there; a dial on loopback
	// normally completes long before.
	watchClientAfter = 250 * time.Millisecond
	// watchClientEvery is how often it checks then.
	watchClientEvery = 100 * time.Millisecond
)

// dialContext is the context of the inside dial for client: it ends after
// wait (at least minDialWait) and once the client is gone (clientGone),
// so that a server that stopped accepting, whose listen backlog is full,
// holds no dial in SYN-SENT and no descriptors for the kernel's two
// minutes of SYN retries. done releases it. A dial that completes within
// watchClientAfter, as on loopback they do, costs one timer.
func dialContext(ctx context.Context, client leg, wait time.Duration) (dctx context.Context, done func()) {
	deadline := time.Now().Add(max(wait, minDialWait))
	dctx, cancel := context.WithCancel(ctx)
	watch := time.AfterFunc(watchClientAfter, func() {
		t := time.NewTicker(watchClientEvery)
		defer t.Stop()
		for !clientGone(client) && time.Now().Before(deadline) {
			select {
			case <-t.C:
			case <-dctx.Done():
				return
			}
		}
		cancel()
	})
	return dctx, func() {
		watch.Stop()
		cancel()
	}
}
