package forward

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testTable is a table of ints by name on a clock the test moves.
func testTable(timeout time.Duration, max int) (*flowTable[string, int], *atomic.Int64) {
	t := newFlowTable[string, int](timeout, max)
	var now atomic.Int64
	t.clock = now.Load
	return t, &now
}

// advance moves the table's clock on by d.
func advance(now *atomic.Int64, d time.Duration) { now.Add(int64(d)) }

// keys lists the table's keys, most recently used first.
func keys[K comparable, V any](t *flowTable[K, V]) []K {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ks []K
	for e := t.lru.Front(); e != nil; e = e.Next() {
		ks = append(ks, e.Value.(*flowEntry[K, V]).key)
	}
	return ks
}

// A flow expires once idle for the timeout; a datagram either way (get,
// touch) starts the wait again.
func TestFlowTableTimeout(t *testing.T) {
	tab, now := testTable(10*time.Second, 8)
	a, _ := tab.add("a", 1)
	b, _ := tab.add("b", 2)
	advance(now, 6*time.Second)
	tab.get("a")
	tab.touch(b)
	advance(now, 6*time.Second)
	if tab.expire(a) || tab.expire(b) {
		t.Fatal("a flow used 6s ago expired with a timeout of 10s")
	}
	if got := tab.idle(a); got != 6*time.Second {
		t.Errorf("idle %v, want 6s", got)
	}
	advance(now, 4*time.Second)
	if !tab.expire(a) {
		t.Fatal("a flow idle for the timeout did not expire")
	}
	if tab.get("a") != nil || tab.len() != 1 {
		t.Fatalf("an expired flow is still in the table: %v", keys(tab))
	}
	if !tab.expire(a) {
		t.Error("expire of a flow already gone: false, want true")
	}
	if tab.remove(a) {
		t.Error("remove of an expired flow reported it there")
	}
}

// The table holds at most max flows: a new one evicts the flow idle
// longest, which add returns for the caller to close.
func TestFlowTableBound(t *testing.T) {
	const max = 3
	tab, now := testTable(time.Minute, max)
	for i := range 10 {
		k := fmt.Sprint(i)
		full := tab.full()
		_, removed := tab.add(k, i)
		if n := tab.len(); n > max {
			t.Fatalf("%d flows in a table of %d", n, max)
		}
		if want := i >= max; full != want || (removed != nil) != want {
			t.Fatalf("flow %d: full %v, removed %v", i, full, removed)
		}
		if removed != nil && removed.value != i-max {
			t.Fatalf("flow %d evicted %d, want %d, the oldest", i, removed.value, i-max)
		}
		advance(now, time.Second)
	}
	if got, want := keys(tab), []string{"9", "8", "7"}; !slices.Equal(got, want) {
		t.Fatalf("flows %v, want %v", got, want)
	}
	// A second flow of a key replaces the first, which add returns.
	_, removed := tab.add("8", 80)
	if removed == nil || removed.value != 8 || tab.len() != max || tab.get("8").value != 80 {
		t.Fatalf("replacing flow 8: removed %v, %d flows", removed, tab.len())
	}
}

// Eviction takes the flow idle longest: get moves a flow to the front at
// once, touch (a reply) at most once per lruGranularity.
func TestFlowTableLRUOrder(t *testing.T) {
	tab, now := testTable(time.Minute, 3)
	a, _ := tab.add("a", 1)
	advance(now, time.Millisecond)
	tab.add("b", 2)
	advance(now, time.Millisecond)
	c, _ := tab.add("c", 3)
	if got, want := keys(tab), []string{"c", "b", "a"}; !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	tab.get("a")
	if got, want := keys(tab), []string{"a", "c", "b"}; !slices.Equal(got, want) {
		t.Fatalf("after get(a): %v, want %v", got, want)
	}
	tab.touch(c) // c moved to the front less than lruGranularity ago
	if got, want := keys(tab), []string{"a", "c", "b"}; !slices.Equal(got, want) {
		t.Fatalf("after an early touch(c): %v, want %v", got, want)
	}
	advance(now, lruGranularity)
	tab.touch(c)
	if got, want := keys(tab), []string{"c", "a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("after touch(c): %v, want %v", got, want)
	}
	if _, removed := tab.add("d", 4); removed == nil || removed.key != "b" {
		t.Fatalf("add to a full table evicted %v, want b", removed)
	}
	if e := tab.evictOldest(); e != a {
		t.Fatalf("evictOldest: %v, want a", e)
	}
	tab.remove(c)
	tab.evictOldest()
	if e := tab.evictOldest(); e != nil || tab.len() != 0 {
		t.Fatalf("evictOldest of an empty table: %v, %d left", e, tab.len())
	}
}

// Many goroutines using one table keep it consistent (run with -race):
// never over the bound, no flow handed out twice for closing, and the map
// and the eviction order agree.
func TestFlowTableConcurrent(t *testing.T) {
	const max, workers, rounds = 16, 8, 2000
	tab := newFlowTable[int, int](time.Millisecond, max)
	var removedTwice atomic.Int64
	var closed sync.Map
	closeOnce := func(e *flowEntry[int, int]) {
		if _, dup := closed.LoadOrStore(e, true); dup {
			removedTwice.Add(1)
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := (w*rounds + i) % (4 * max)
				switch i % 5 {
				case 0, 1:
					if e := tab.get(k); e != nil {
						tab.touch(e)
					} else if _, removed := tab.add(k, i); removed != nil {
						closeOnce(removed)
					}
				case 2:
					if e := tab.get(k); e != nil && tab.remove(e) {
						closeOnce(e)
					}
				case 3:
					if e := tab.get(k); e != nil {
						tab.expire(e)
					}
				case 4:
					if e := tab.evictOldest(); e != nil {
						closeOnce(e)
					}
				}
				tab.mu.Lock()
				n, m := len(tab.flows), tab.lru.Len()
				tab.mu.Unlock()
				if n > max || n != m {
					t.Errorf("%d flows in the map, %d in the eviction order, of at most %d", n, m, max)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, e := range tab.removeAll() {
		closeOnce(e)
	}
	if n := removedTwice.Load(); n != 0 {
		t.Fatalf("%d flows handed out for closing twice", n)
	}
	if tab.len() != 0 || len(keys(tab)) != 0 {
		t.Fatal("flows left after removeAll")
	}
}
