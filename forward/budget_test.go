package forward

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// The budget is shared: flows of two relays together stay within it, and
// a new flow of one relay closes the flow idle longest of both, here one
// of the other relay's, not its own younger one.
func TestFlowBudgetSharedByRelays(t *testing.T) {
	port := udpServer4(t, udpWhoami)
	b := NewFlowBudget(3)
	ra := &UDPRelay{Port: port, Budget: b}
	rb := &UDPRelay{Port: port, Budget: b}
	addrA, _, _ := startUDPRelay(t, ra, loopback4)
	addrB, _, _ := startUDPRelay(t, rb, loopback4)
	type client struct {
		c      *net.UDPConn
		inside string
	}
	open := func(relay netip.AddrPort) client {
		c := udpClient(t, relay)
		got, err := exchange(c, []byte("who"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return client{c, string(got)}
	}
	a0, b0, a1 := open(addrA), open(addrB), open(addrA)
	if got := b.Used(); got != 3 {
		t.Fatalf("budget used %d, want 3", got)
	}
	b1 := open(addrB) // the budget is spent: a0, the idlest of all, goes
	if got := b.Used(); got > 3 {
		t.Fatalf("budget used %d, limit 3", got)
	}
	if n := ra.Stats.Active.Load() + rb.Stats.Active.Load(); n > 3 {
		t.Fatalf("%d flows open, budget 3", n)
	}
	for _, c := range []struct {
		name string
		cl   client
		kept bool
	}{{"b0", b0, true}, {"a1", a1, true}, {"b1", b1, true}, {"a0", a0, false}} {
		got, err := exchange(c.cl.c, []byte("who"), 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if kept := string(got) == c.cl.inside; kept != c.kept {
			t.Errorf("%s: flow kept %v, want %v (only a0, idle longest, evicted)", c.name, kept, c.kept)
		}
	}
}

// What a flow takes it gives back: once the relays end, the budget is
// whole again.
func TestFlowBudgetGivenBack(t *testing.T) {
	port := udpServer4(t, udpEcho)
	b := NewFlowBudget(100)
	r := &UDPRelay{Port: port, Budget: b, MaxFlows: 2}
	addr, cancel, done := startUDPRelay(t, r, loopback4)
	for range 5 { // two fit, three evict
		if _, err := exchange(udpClient(t, addr), []byte("x"), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Used(); got != 2 {
		t.Fatalf("budget used %d with 2 flows open", got)
	}
	cancel()
	<-done
	if got := b.Used(); got != 0 {
		t.Fatalf("budget used %d after the relay ended, want 0", got)
	}
}

// The share of UDP flows leaves room for the process's own descriptors
// and half the rest to TCP.
func TestBudgetFor(t *testing.T) {
	for _, tt := range []struct {
		cur     uint64
		sockets int
		want    int
	}{
		{64, 2, 15},
		{1024, 2, 495},
		{20000, 5, 9981},
		{10, 2, 1}, // never nothing
		{1 << 40, 0, (1<<30 - fixedFDs) / 2},
	} {
		if got := budgetFor(tt.cur, tt.sockets); got != tt.want {
			t.Errorf("budgetFor(%d, %d) = %d, want %d", tt.cur, tt.sockets, got, tt.want)
		}
	}
}
