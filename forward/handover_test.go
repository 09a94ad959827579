package forward

import (
	"net/netip"
	"slices"
	"testing"
)

func TestHandoverDecide(t *testing.T) {
	pair := []Published{
		{Proto: TCP, Host: netip.MustParseAddrPort("127.0.0.1:8080"), Inside: 80},
		{Proto: TCP, Host: netip.MustParseAddrPort("[::1]:8080"), Inside: 80},
	}
	v4only := []Published{{Proto: TCP, Host: netip.MustParseAddrPort("127.0.0.1:8080"), Inside: 80}}
	dual := []Published{{Proto: TCP, Host: netip.MustParseAddrPort("[::]:8080"), Inside: 80}}
	// The native path's sockets (Bind, native): the default loopback spec
	// is a catch-all on lo and a family socket per loopback address; [::]
	// a dual catch-all and an IPv4 family socket; 0.0.0.0 a v4-mapped
	// catch-all and an IPv4 family socket.
	native := []Published{
		{Proto: TCP, Host: netip.MustParseAddrPort("[::]:8080"), Inside: 80, Role: RoleCatchAll},
		{Proto: TCP, Host: netip.MustParseAddrPort("127.0.0.1:8080"), Inside: 80, Role: RoleFamily},
		{Proto: TCP, Host: netip.MustParseAddrPort("[::1]:8080"), Inside: 80, Role: RoleFamily},
	}
	nativeAny := []Published{
		{Proto: TCP, Host: netip.MustParseAddrPort("[::]:8080"), Inside: 80, Role: RoleCatchAll},
		{Proto: TCP, Host: netip.MustParseAddrPort("0.0.0.0:8080"), Inside: 80, Role: RoleFamily},
	}
	native4 := []Published{
		{Proto: TCP, Host: netip.MustParseAddrPort("[::ffff:0.0.0.0]:8080"), Inside: 80, Role: RoleCatchAll},
		{Proto: TCP, Host: netip.MustParseAddrPort("0.0.0.0:8080"), Inside: 80, Role: RoleFamily},
	}
	udpRelayed := []Published{
		{Proto: UDP, Host: netip.MustParseAddrPort("127.0.0.1:5353"), Inside: 53, Fixed: true},
		{Proto: UDP, Host: netip.MustParseAddrPort("[::1]:5353"), Inside: 53, Fixed: true},
	}
	type step struct {
		addr      string
		proto     Proto
		v6only    bool
		reusePort bool
		inUse     bool
		give      int
		from      HandoverState
		relay     []int
		forward   []int
	}
	tests := []struct {
		name  string
		socks []Published
		steps []step
	}{
		{"unpublished port continues", pair, []step{{addr: "0.0.0.0:9", give: -1}}},
		{"Go's port 0 probe continues", pair, []step{{addr: "[::1]:0", give: -1}}},
		{"another protocol continues", pair, []step{{addr: "0.0.0.0:80", proto: UDP, give: -1}}},
		{"IPv4 bind gets the IPv4 socket, the IPv6 one is forwarded to it", pair, []step{
			{addr: "0.0.0.0:80", give: 0, from: Waiting, forward: []int{1}},
		}},
		{"a loopback bind gets it too", pair, []step{
			{addr: "127.0.0.1:80", give: 0, from: Waiting, forward: []int{1}},
		}},
		{"dual-stack bind gets the IPv6 socket", pair, []step{
			{addr: "[::]:80", give: 1, from: Waiting, forward: []int{0}},
		}},
		{"nginx: IPv4 then IPv6 takes the forwarded socket back", pair, []step{
			{addr: "0.0.0.0:80", give: 0, from: Waiting, forward: []int{1}},
			{addr: "[::]:80", give: 1, from: Forwarded},
		}},
		{"another address continues and the port is relayed", pair, []step{
			{addr: "10.0.0.1:80", give: -1, relay: []int{0, 1}},
		}},
		{"an IPv4-mapped address continues", pair, []step{
			{addr: "[::ffff:127.0.0.1]:80", give: -1, relay: []int{0, 1}},
		}},
		{"no host socket of the family: continue and relay, then take the relayed one", v4only, []step{
			{addr: "[::]:80", give: -1, relay: []int{0}},
			{addr: "0.0.0.0:80", give: 0, from: Relayed},
		}},
		{"SO_REUSEPORT workers share the host socket", pair, []step{
			{addr: "0.0.0.0:80", reusePort: true, give: 0, from: Waiting, forward: []int{1}},
			{addr: "0.0.0.0:80", reusePort: true, inUse: true, give: 0, from: Given},
			{addr: "0.0.0.0:80", reusePort: true, inUse: true, give: 0, from: Given},
		}},
		{"SO_REUSEPORT only on the second bind does not share", pair, []step{
			{addr: "0.0.0.0:80", give: 0, from: Waiting, forward: []int{1}},
			{addr: "0.0.0.0:80", reusePort: true, inUse: true, give: -1},
		}},
		{"a second bind while the server holds the socket continues", pair, []step{
			{addr: "0.0.0.0:80", give: 0, from: Waiting, forward: []int{1}},
			{addr: "127.0.0.2:80", inUse: true, give: -1},
		}},
		{"a bind after the server closed its socket gets it again", pair, []step{
			{addr: "[::]:80", give: 1, from: Waiting, forward: []int{0}},
			{addr: "[::]:80", give: 1, from: Given},
		}},
		{"native, shape 1: a dual-stack bind gets the catch-all, nothing to forward", native, []step{
			{addr: "[::]:80", give: 0, from: Waiting},
		}},
		{"native, shape 2: IPv4 gets its family socket and the catch-all is forwarded to it, IPv6-only gets the other", native, []step{
			{addr: "0.0.0.0:80", give: 1, from: Waiting, forward: []int{0}},
			{addr: "[::]:80", v6only: true, give: 2, from: Waiting},
		}},
		{"native, shape 2 the other way round", native, []step{
			{addr: "[::]:80", v6only: true, give: 2, from: Waiting, forward: []int{0}},
			{addr: "0.0.0.0:80", give: 1, from: Waiting},
		}},
		{"native, shape 4: 127.0.0.1 gets the IPv4 family socket", native, []step{
			{addr: "127.0.0.1:80", give: 1, from: Waiting, forward: []int{0}},
		}},
		{"native, shape 5: ::1 gets the IPv6 family socket, also when not IPv6-only", native, []step{
			{addr: "[::1]:80", give: 2, from: Waiting, forward: []int{0}},
		}},
		{"native: a server that closes and binds again gets its family socket again", native, []step{
			{addr: "0.0.0.0:80", give: 1, from: Waiting, forward: []int{0}},
			{addr: "0.0.0.0:80", give: 1, from: Given},
		}},
		{"native: another address continues, only the catch-all is relayed", native, []step{
			{addr: "10.0.0.1:80", give: -1, relay: []int{0}},
			{addr: "0.0.0.0:80", give: 1, from: Waiting},
		}},
		{"native [::]: IPv6-only gets the catch-all, which the kernel prefers on [::]", nativeAny, []step{
			{addr: "0.0.0.0:80", give: 1, from: Waiting, forward: []int{0}},
			{addr: "[::]:80", v6only: true, give: 0, from: Forwarded},
		}},
		{"native [::]: a dual-stack bind gets the catch-all", nativeAny, []step{
			{addr: "[::]:80", give: 0, from: Waiting},
		}},
		{"native 0.0.0.0: IPv4 gets the family socket, IPv6-only has none and continues", native4, []step{
			{addr: "0.0.0.0:80", give: 1, from: Waiting, forward: []int{0}},
			{addr: "[::]:80", v6only: true, give: -1},
		}},
		{"native 0.0.0.0: a dual-stack bind gets the IPv4 catch-all", native4, []step{
			{addr: "[::]:80", give: 0, from: Waiting},
		}},
		{"UDP relayed for the whole run is never given", udpRelayed, []step{
			{addr: "0.0.0.0:53", proto: UDP, give: -1},
			{addr: "[::]:53", proto: UDP, give: -1},
		}},
		{"a dual-stack host socket: IPv6 gets it, IPv4 continues with nothing to relay", dual, []step{
			{addr: "[::]:80", give: 0, from: Waiting},
			{addr: "0.0.0.0:80", inUse: true, give: -1},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandover(tt.socks)
			for i, s := range tt.steps {
				proto := s.proto
				if proto == "" {
					proto = TCP
				}
				req := BindRequest{Proto: proto, Addr: netip.MustParseAddrPort(s.addr), ReusePort: s.reusePort, V6Only: s.v6only}
				d := h.Decide(req, func(int) bool { return s.inUse })
				if d.Give != s.give || (d.Give >= 0 && d.From != s.from) || !slices.Equal(d.Relay, s.relay) || !slices.Equal(d.Forward, s.forward) {
					t.Fatalf("step %d (%s): got give %d from %v relay %v forward %v (%s); want give %d from %v relay %v forward %v",
						i, s.addr, d.Give, d.From, d.Relay, d.Forward, d.Why, s.give, s.from, s.relay, s.forward)
				}
				h.Record(d, s.reusePort)
			}
		})
	}
}

func TestHandoverRecord(t *testing.T) {
	h := NewHandover([]Published{
		{Proto: TCP, Host: netip.MustParseAddrPort("127.0.0.1:8080"), Inside: 80},
		{Proto: TCP, Host: netip.MustParseAddrPort("[::1]:8080"), Inside: 80},
	})
	d := h.Decide(BindRequest{Proto: TCP, Addr: netip.MustParseAddrPort("0.0.0.0:80")}, nil)
	h.Record(d, false)
	if h.State(0) != Given || h.State(1) != Forwarded || h.Target(1) != 0 {
		t.Fatalf("states %v %v target %d", h.State(0), h.State(1), h.Target(1))
	}
}

func TestDialAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:8080":          "127.0.0.1:8080",
		"[::]:8080":             "[::1]:8080",
		"192.0.2.7:8080":        "192.0.2.7:8080",
		"[2001:db8::]:443":      "[2001:db8::]:443",
		"[::ffff:0.0.0.0]:8080": "127.0.0.1:8080",
	} {
		if got := DialAddr(netip.MustParseAddrPort(in)); got.String() != want {
			t.Errorf("DialAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
