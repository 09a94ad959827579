package parent

import (
	"net/netip"
	"testing"

	"github.com/nsbind/nsbind/forward"
	"github.com/nsbind/nsbind/nsutil"
)

// Which published sockets nsbind port rm SPEC removes.
func TestPortRmMatches(t *testing.T) {
	published := func(spec, host string, inside uint16) publishedSocket {
		s, err := forward.ParseSpec(spec)
		if err != nil {
			t.Fatal(err)
		}
		return publishedSocket{spec: s, added: true,
			sc: nsutil.SocketConfig{Proto: string(s.Proto), Host: netip.MustParseAddrPort(host), Inside: inside}}
	}
	for _, tt := range []struct {
		name string
		p    publishedSocket
		rm   string
		want bool
	}{
		{"same spec, v4", published("81:8081", "127.0.0.1:8081", 81), "81:8081", true},
		{"same spec, v6", published("81:8081", "[::1]:8081", 81), "81:8081", true},
		{"another host port", published("81:8081", "127.0.0.1:8081", 81), "81:8082", false},
		{"another inside port", published("81:8081", "127.0.0.1:8081", 81), "82:8081", false},
		{"another protocol", published("81:8081", "127.0.0.1:8081", 81), "81:8081/udp", false},
		{"another address", published("81:0.0.0.0:8081", "0.0.0.0:8081", 81), "81:8081", false},
		{"an address given", published("81:0.0.0.0:8081", "0.0.0.0:8081", 81), "81:0.0.0.0:8081", true},
		{"the kernel's port, by its spec", published("81:0", "127.0.0.1:40001", 81), "81:0", true},
		{"the kernel's port, by the port", published("81:0", "127.0.0.1:40001", 81), "81:40001", true},
		{"the kernel's port of another spec", published("81:0.0.0.0:0", "0.0.0.0:40001", 81), "81:0", false},
		{"one port of a range", published("81-82:8081-8082", "127.0.0.1:8082", 82), "82:8082", true},
		{"a range", published("82:8082", "127.0.0.1:8082", 82), "81-82:8081-8082", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := forward.ParseSpec(tt.rm)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := forward.Expand([]forward.Spec{s})
			if err != nil {
				t.Fatal(err)
			}
			if got := matches(tt.p, bs); got != tt.want {
				t.Errorf("rm %s of %s (%s): %v, want %v", tt.rm, tt.p.sc.Host, tt.p.spec, got, tt.want)
			}
		})
	}
}
