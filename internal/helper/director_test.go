package helper

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/nsbind/nsbind/forward"
)

// recorder is hostSockets that records what the handovers ask of it and
// fails the relays of the sockets in failRelay.
type recorder struct {
	failRelay map[int]bool
	calls     []string
}

func (r *recorder) relay(i int) (func(), error) {
	if r.failRelay[i] {
		r.calls = append(r.calls, fmt.Sprintf("relay %d failed", i))
		return nil, errors.New("too many open files")
	}
	r.calls = append(r.calls, fmt.Sprintf("relay %d", i))
	return func() { r.calls = append(r.calls, fmt.Sprintf("stop %d", i)) }, nil
}

func (r *recorder) forward(i, target int) error {
	r.calls = append(r.calls, fmt.Sprintf("forward %d to %d", i, target))
	return nil
}

func (r *recorder) takeBack(i int) { r.calls = append(r.calls, fmt.Sprintf("take back %d", i)) }

func (r *recorder) inUse(int) bool { return true }

// bind is one bind of the server as the director handles it: decide,
// release what is given, carry it out.
func (s *handovers) bind(addr string) forward.Decision {
	req := forward.BindRequest{Proto: forward.TCP, Addr: netip.MustParseAddrPort(addr)}
	dec := s.decide(req)
	if dec.Give >= 0 {
		s.release(dec)
	}
	s.carryOut(dec, false)
	return dec
}

func TestHandovers(t *testing.T) {
	pair := []forward.Published{
		{Proto: forward.TCP, Host: netip.MustParseAddrPort("127.0.0.1:8080"), Inside: 80},
		{Proto: forward.TCP, Host: netip.MustParseAddrPort("[::1]:8080"), Inside: 80},
	}
	tests := []struct {
		name      string
		failRelay map[int]bool
		binds     []string
		calls     []string
		states    []forward.HandoverState
	}{
		{name: "IPv4 bind: the IPv6 socket is forwarded to it",
			binds:  []string{"0.0.0.0:80"},
			calls:  []string{"forward 1 to 0"},
			states: []forward.HandoverState{forward.Given, forward.Forwarded}},
		{name: "nginx: IPv4, then IPv6 takes the forwarded one back",
			binds:  []string{"0.0.0.0:80", "[::]:80"},
			calls:  []string{"forward 1 to 0", "take back 1"},
			states: []forward.HandoverState{forward.Given, forward.Given}},
		{name: "a bind inside, then the port's relay stops for the server",
			binds:  []string{"10.0.0.1:80", "0.0.0.0:80"},
			calls:  []string{"relay 0", "relay 1", "stop 0"},
			states: []forward.HandoverState{forward.Given, forward.Relayed}},
		// Bug 4: the socket whose relay failed was recorded Relayed, and
		// the next bind called its stop function, which was nil.
		{name: "a relay that failed to start is not recorded, and the next bind takes the socket",
			failRelay: map[int]bool{0: true},
			binds:     []string{"10.0.0.1:80", "0.0.0.0:80"},
			calls:     []string{"relay 0 failed", "relay 1"},
			states:    []forward.HandoverState{forward.Given, forward.Relayed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{failRelay: tt.failRelay}
			s := newHandovers(pair, r, func(string, int, error) {})
			for _, b := range tt.binds {
				s.bind(b)
			}
			if !slices.Equal(r.calls, tt.calls) {
				t.Errorf("calls %q, want %q", r.calls, tt.calls)
			}
			for i, want := range tt.states {
				if got := s.h.State(i); got != want {
					t.Errorf("socket %d is %v, want %v", i, got, want)
				}
			}
		})
	}
}

// Where the native path is not available, only the host sockets that
// listen are relayed: the catch-all takes both families, and a family
// socket never listens then. UDP relayed for the whole run is relayed from
// the start and never given.
func TestHandoversNativeFallback(t *testing.T) {
	socks := []forward.Published{
		{Proto: forward.TCP, Host: netip.MustParseAddrPort("[::]:8080"), Inside: 80, Role: forward.RoleCatchAll},
		{Proto: forward.TCP, Host: netip.MustParseAddrPort("127.0.0.1:8080"), Inside: 80, Role: forward.RoleFamily},
		{Proto: forward.TCP, Host: netip.MustParseAddrPort("[::1]:8080"), Inside: 80, Role: forward.RoleFamily},
		{Proto: forward.UDP, Host: netip.MustParseAddrPort("127.0.0.1:5353"), Inside: 53, Fixed: true},
	}
	r := &recorder{}
	s := newHandovers(socks, r, func(string, int, error) {})
	s.relayFixed()
	s.relayWaiting()
	if want := []string{"relay 3", "relay 0"}; !slices.Equal(r.calls, want) {
		t.Errorf("calls %q, want %q", r.calls, want)
	}
	want := []forward.HandoverState{forward.Relayed, forward.Waiting, forward.Waiting, forward.Relayed}
	for i, w := range want {
		if got := s.h.State(i); got != w {
			t.Errorf("socket %d is %v, want %v", i, got, w)
		}
	}
}
