package forward

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FlowBudget is one bound on the descriptors that the UDP flows of a whole
// process hold, over every relay that shares it (the published UDP ports
// and outbound UDP). Each relay's own bound (MaxFlows) counts only its
// flows: five flooded UDP ports of 4096 flows each took a helper with
// 20,000 descriptors to its limit, and its TCP connections then had none
// left to dial the server. A flow takes from the budget before it opens
// its socket; when the budget is spent, the flow idle longest of all the
// relays sharing it is closed to make room. What is left of the
// descriptors is kept for TCP connections and the process's own.
//
// A nil *FlowBudget bounds nothing. Its methods may be called from any
// goroutine.
type FlowBudget struct {
	limit int64
	used  atomic.Int64

	mu      sync.Mutex // guards members
	members []*budgetMember
}

// budgetMember is a relay sharing a budget: how long its flow idle longest
// has been idle, and a way to close that flow.
type budgetMember struct {
	oldest func() (time.Duration, bool)
	evict  func() bool
}

// NewFlowBudget is a budget of n descriptors (at least 1).
func NewFlowBudget(n int) *FlowBudget {
	return &FlowBudget{limit: int64(max(n, 1))}
}

// Budget shares of RLIMIT_NOFILE: fixedFDs are what a process needs
// beyond its host sockets (standard descriptors, the control channel, the
// runtime's poller, the outbound listeners, a profile); of the rest, UDP
// flows may hold half, and TCP connections (two descriptors each, and a
// pipe pair while splicing) keep the other half.
const fixedFDs = 32

// FlowBudgetFromLimit is the budget of a process with sockets descriptors
// of its own (its host sockets), from its descriptor limit now.
func FlowBudgetFromLimit(sockets int) *FlowBudget {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil
	}
	return NewFlowBudget(budgetFor(lim.Cur, sockets))
}

// budgetFor is the share of UDP flows of a limit of cur descriptors.
func budgetFor(cur uint64, sockets int) int {
	const most = 1 << 30
	free := int64(min(cur, most)) - fixedFDs - int64(sockets)
	return int(max(free/2, 1))
}

// Limit is the number of descriptors the budget hands out.
func (b *FlowBudget) Limit() int {
	if b == nil {
		return 0
	}
	return int(b.limit)
}

// Used is the number of descriptors taken now.
func (b *FlowBudget) Used() int {
	if b == nil {
		return 0
	}
	return int(b.used.Load())
}

// take takes n descriptors for a new flow, closing the flows idle longest
// of the relays sharing b while there are not enough left. It reports
// whether it got them; the caller gives them back with release.
func (b *FlowBudget) take(n int) bool {
	if b == nil {
		return true
	}
	for range 8 {
		if used := b.used.Add(int64(n)); used <= b.limit {
			return true
		}
		b.used.Add(-int64(n))
		if !b.evictIdlest() {
			return false
		}
	}
	return false
}

// release gives back n descriptors taken with take.
func (b *FlowBudget) release(n int) {
	if b != nil {
		b.used.Add(-int64(n))
	}
}

// evictIdlest closes the flow idle longest of all members and reports
// whether there was one.
func (b *FlowBudget) evictIdlest() bool {
	b.mu.Lock()
	members := append([]*budgetMember(nil), b.members...)
	b.mu.Unlock()
	var pick *budgetMember
	var longest time.Duration
	for _, m := range members {
		if idle, ok := m.oldest(); ok && (pick == nil || idle > longest) {
			pick, longest = m, idle
		}
	}
	return pick != nil && pick.evict()
}

// joinBudget makes the flows of t evictable by b, with close closing one;
// leave ends that.
func joinBudget[K comparable, V any](b *FlowBudget, t *flowTable[K, V], close func(V)) (leave func()) {
	if b == nil {
		return func() {}
	}
	m := &budgetMember{
		oldest: t.oldest,
		evict: func() bool {
			e := t.evictOldest()
			if e == nil {
				return false
			}
			close(e.value)
			return true
		},
	}
	b.mu.Lock()
	b.members = append(b.members, m)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, x := range b.members {
			if x == m {
				b.members = append(b.members[:i], b.members[i+1:]...)
				return
			}
		}
	}
}

// oldest is how long the flow idle longest has been idle, if there is one.
func (t *flowTable[K, V]) oldest() (time.Duration, bool) {
	t.mu.Lock()
	b := t.lru.Back()
	var e *flowEntry[K, V]
	if b != nil {
		e = b.Value.(*flowEntry[K, V])
	}
	t.mu.Unlock()
	if e == nil {
		return 0, false
	}
	return t.idle(e), true
}
