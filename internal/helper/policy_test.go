package helper

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/nsbind/nsbind/forward"
)

func TestPolicyDecide(t *testing.T) {
	ap := netip.MustParseAddrPort
	forwards := []hostForward{
		{forward.TCP, ap("127.0.0.1:5432"), ap("127.0.0.1:15432")},
		{forward.TCP, ap("[::1]:5432"), ap("[::1]:15432")},
		{forward.UDP, ap("127.0.0.53:53"), ap("127.0.0.53:53")},
	}
	// The helper's redirect listener on 40001, its TPROXY socket on 40002.
	own := []protoAddr{
		{forward.TCP, ap("127.0.0.1:40001")}, {forward.TCP, ap("[::1]:40001")},
		{forward.UDP, ap("127.0.0.1:40002")}, {forward.UDP, ap("[::1]:40002")},
	}
	open := newPolicy(false, forwards, own)
	isolated := newPolicy(true, forwards, own)
	tests := []struct {
		name  string
		p     *policy
		proto forward.Proto
		dst   string
		want  string // "" for refused
	}{
		{"outside address", open, forward.TCP, "198.51.100.2:80", "198.51.100.2:80"},
		{"outside IPv6", open, forward.TCP, "[2001:db8::2]:443", "[2001:db8::2]:443"},
		{"outside UDP", open, forward.UDP, "198.51.100.2:53", "198.51.100.2:53"},
		{"IPv4-mapped outside", open, forward.TCP, "[::ffff:198.51.100.2]:80", "198.51.100.2:80"},
		{"a host address", open, forward.TCP, "10.213.0.1:22", "10.213.0.1:22"},
		{"--to-host port", open, forward.TCP, "127.0.0.1:5432", "127.0.0.1:15432"},
		{"--to-host port, IPv6", open, forward.TCP, "[::1]:5432", "[::1]:15432"},
		{"--to-host port, IPv4-mapped", open, forward.TCP, "[::ffff:127.0.0.1]:5432", "127.0.0.1:15432"},
		{"resolver on loopback", open, forward.UDP, "127.0.0.53:53", "127.0.0.53:53"},
		{"--to-host port, other protocol", open, forward.UDP, "127.0.0.1:5432", ""},
		{"--to-host port, other loopback address", open, forward.TCP, "127.0.0.2:5432", ""},
		{"loopback port not forwarded", open, forward.TCP, "127.0.0.1:22", ""},
		{"IPv6 loopback not forwarded", open, forward.TCP, "[::1]:22", ""},
		{"UDP loopback not forwarded", open, forward.UDP, "127.0.0.1:53", ""},
		{"unspecified, as loopback", open, forward.TCP, "0.0.0.0:22", ""},
		{"unspecified IPv6", open, forward.TCP, "[::]:5432", ""},
		{"the helper's listener", open, forward.TCP, "127.0.0.1:40001", ""},
		{"the helper's listener, IPv6", open, forward.TCP, "[::1]:40001", ""},
		{"the helper's TPROXY socket", open, forward.UDP, "127.0.0.1:40002", ""},
		{"isolated: outside", isolated, forward.TCP, "198.51.100.2:80", ""},
		{"isolated: --to-host port", isolated, forward.TCP, "127.0.0.1:5432", ""},
		{"isolated: UDP", isolated, forward.UDP, "198.51.100.2:53", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.decide(tt.proto, ap(tt.dst))
			if tt.want == "" {
				if !errors.Is(err, errNotAllowed) {
					t.Fatalf("decide(%s %s) = %v, %v; want refused", tt.proto, tt.dst, got, err)
				}
				if verdictFor(err) != refuse {
					t.Errorf("a refusal gives the verdict %v, want refuse", verdictFor(err))
				}
				return
			}
			if err != nil || got != ap(tt.want) {
				t.Fatalf("decide(%s %s) = %v, %v; want %s", tt.proto, tt.dst, got, err, tt.want)
			}
		})
	}
}

// Helper's own sockets whose port a --to-host port also uses: the own
// socket wins only for the protocol it is.
func TestPolicyOwnSocketsPerProtocol(t *testing.T) {
	ap := netip.MustParseAddrPort
	p := newPolicy(false,
		[]hostForward{{forward.UDP, ap("127.0.0.1:40001"), ap("127.0.0.1:40001")}},
		[]protoAddr{{forward.TCP, ap("127.0.0.1:40001")}})
	if _, err := p.decide(forward.TCP, ap("127.0.0.1:40001")); err == nil {
		t.Errorf("the helper's TCP listener was allowed")
	}
	if got, err := p.decide(forward.UDP, ap("127.0.0.1:40001")); err != nil || got != ap("127.0.0.1:40001") {
		t.Errorf("the --to-host UDP port: %v, %v", got, err)
	}
}
