package parent

import (
	"strings"
	"testing"

	"github.com/nsbind/nsbind/nsutil"
)

// The note names each interface that does not forward and the sysctl
// that says so, in one line; none when all forward.
func TestForwardingNote(t *testing.T) {
	cases := []struct {
		name string
		f    nsutil.Forwarding
		ipv6 bool
		want []string
	}{
		{name: "all forward", f: nsutil.Forwarding{All4: true, All6: true}, ipv6: true},
		{name: "eth0 both families", f: nsutil.Forwarding{Blocked4: []string{"eth0"}, Blocked6: []string{"eth0"}}, ipv6: true,
			want: []string{"eth0 does not forward (net.ipv4.conf.eth0.forwarding=0, net.ipv6.conf.eth0.force_forwarding=0;", "loopback is always relayed"}},
		{name: "no IPv6 on the veth", f: nsutil.Forwarding{Blocked6: []string{"eth0"}}, ipv6: false},
		{name: "two", f: nsutil.Forwarding{Blocked4: []string{"eth0", "wlan0"}}, want: []string{"eth0, wlan0 do not forward (net.ipv4.conf.eth0.forwarding=0, net.ipv4.conf.wlan0.forwarding=0;"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := forwardingNote(c.f, c.ipv6)
			if len(c.want) == 0 && got != "" {
				t.Fatalf("got %q, want no note", got)
			}
			for _, w := range c.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
			if strings.Contains(got, "\n") {
				t.Errorf("not one line: %q", got)
			}
		})
	}
}
