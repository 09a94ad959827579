package forward

import (
	"container/list"
	"sync"
	"sync/atomic"
	"time"
)

// flowTable holds the open flows of a UDP relay by key: a client's address
// (UDPRelay), or a program's address and destination (UDPOutbound). It
// bounds them, and knows which one has been idle longest.
//
// A flow ends after the timeout with no datagram either way: its goroutine
// reads with a deadline (idle says how far off) and calls expire when the
// deadline passes. When the table is full, a new flow evicts the flow idle
// longest: the oldest client is the likeliest to be gone, and a busy relay
// keeps serving new clients. The table only keeps the books; closing what
// it removes is the caller's, outside the table's lock.
//
// Every method may be called from any goroutine.
type flowTable[K comparable, V any] struct {
	timeout time.Duration
	max     int
	// clock is the time in nanoseconds on a monotonic clock.
	clock func() int64

	mu    sync.Mutex // guards flows, lru and every entry's elem and gone
	flows map[K]*flowEntry[K, V]
	lru   list.List // of *flowEntry[K, V], most recently used first
}

// flowEntry is one flow of a flowTable.
type flowEntry[K comparable, V any] struct {
	key   K
	value V
	// last is when a datagram last passed either way, touched when the
	// entry last moved to the front of the eviction order (both on the
	// table's clock).
	last, touched atomic.Int64
	elem          *list.Element // in lru; guarded by the table's mu
	gone          bool          // out of the table; guarded by its mu
}

// lruGranularity is how stale a flow's place in the eviction order may get
// before touch moves it to the front: a reply need not take the table's
// lock.
const lruGranularity = time.Second

// newFlowTable makes a table of at most max flows that end after timeout.
func newFlowTable[K comparable, V any](timeout time.Duration, max int) *flowTable[K, V] {
	epoch := time.Now()
	return &flowTable[K, V]{
		timeout: timeout,
		max:     max,
		clock:   func() int64 { return int64(time.Since(epoch)) },
		flows:   make(map[K]*flowEntry[K, V]),
	}
}

// get returns the flow of k, marked used, or nil.
func (t *flowTable[K, V]) get(k K) *flowEntry[K, V] {
	now := t.clock()
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.flows[k]
	if e != nil {
		e.last.Store(now)
		e.touched.Store(now)
		t.lru.MoveToFront(e.elem)
	}
	return e
}

// full reports whether a new flow would evict one.
func (t *flowTable[K, V]) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows) >= t.max
}

// add puts v in the table as the flow of k, used now. It returns the flow
// it removed to make room, if any: the flow idle longest when the table
// was full, or an earlier flow of k. The caller closes it.
func (t *flowTable[K, V]) add(k K, v V) (e, removed *flowEntry[K, V]) {
	e = &flowEntry[K, V]{key: k, value: v}
	now := t.clock()
	e.last.Store(now)
	e.touched.Store(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.flows[k]; old != nil {
		t.removeLocked(old)
		removed = old
	} else if len(t.flows) >= t.max {
		if b := t.lru.Back(); b != nil {
			removed = b.Value.(*flowEntry[K, V])
			t.removeLocked(removed)
		}
	}
	t.flows[k] = e
	e.elem = t.lru.PushFront(e)
	return e, removed
}

// evictOldest removes the flow idle longest and returns it, or nil when
// the table is empty. The caller closes it.
func (t *flowTable[K, V]) evictOldest() *flowEntry[K, V] {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.lru.Back()
	if b == nil {
		return nil
	}
	e := b.Value.(*flowEntry[K, V])
	t.removeLocked(e)
	return e
}

// touch marks e used by a datagram that passed without a get (a reply).
// It moves e to the front of the eviction order at most once per
// lruGranularity.
func (t *flowTable[K, V]) touch(e *flowEntry[K, V]) {
	now := t.clock()
	e.last.Store(now)
	if time.Duration(now-e.touched.Load()) < lruGranularity {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if !e.gone {
		e.touched.Store(now)
		t.lru.MoveToFront(e.elem)
	}
}

// idle is how long e has been without a datagram.
func (t *flowTable[K, V]) idle(e *flowEntry[K, V]) time.Duration {
	return time.Duration(t.clock() - e.last.Load())
}

// expire removes e if it has been idle for the timeout and reports whether
// it is gone (removed now, or before by another call). The caller closes a
// flow expire removed.
func (t *flowTable[K, V]) expire(e *flowEntry[K, V]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.gone {
		return true
	}
	if t.idle(e) < t.timeout {
		return false
	}
	t.removeLocked(e)
	return true
}

// remove takes e out of the table and reports whether it was there, so
// that of several callers one closes it.
func (t *flowTable[K, V]) remove(e *flowEntry[K, V]) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e.gone {
		return false
	}
	t.removeLocked(e)
	return true
}

// removeAll empties the table and returns what it held.
func (t *flowTable[K, V]) removeAll() []*flowEntry[K, V] {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := make([]*flowEntry[K, V], 0, len(t.flows))
	for _, e := range t.flows {
		all = append(all, e)
		t.removeLocked(e)
	}
	return all
}

// len is the number of flows in the table.
func (t *flowTable[K, V]) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.flows)
}

func (t *flowTable[K, V]) removeLocked(e *flowEntry[K, V]) {
	if e.gone {
		return
	}
	e.gone = true
	delete(t.flows, e.key)
	t.lru.Remove(e.elem)
}
