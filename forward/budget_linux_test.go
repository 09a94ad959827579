package forward

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// An outbound flow shares the budget with the published ports: when
// inbound flows have spent it, a program's new flow closes the idlest
// inbound one and goes out.
func TestFlowBudgetOutboundShares(t *testing.T) {
	port := udpServer4(t, udpEcho)
	b := NewFlowBudget(2 + outFlowFDs)
	in := &UDPRelay{Port: port, Budget: b}
	inAddr, _, _ := startUDPRelay(t, in, loopback4)
	for range 4 {
		if _, err := exchange(udpClient(t, inAddr), []byte("x"), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Used(); got != 4 {
		t.Fatalf("budget used %d, want 4", got)
	}
	out := &UDPOutbound{Pool: hostSockets(t, 4), Budget: b, Logger: slog.New(slog.DiscardHandler)}
	outAddr, _, _ := outboundUDP(t, out, netip.AddrPortFrom(loopback4, port))
	if got, err := say(udpClient(t, outAddr), "out", 10*time.Second); err != nil || got != "out" {
		t.Fatalf("outbound flow: %q, %v", got, err)
	}
	if got := b.Used(); got > 4 {
		t.Fatalf("budget used %d, limit 4", got)
	}
	if n := in.Stats.Active.Load(); n != 2 {
		t.Fatalf("%d inbound flows open, want 2 (two closed for the outbound flow)", n)
	}
}
