package forward

import (
	"strings"
	"testing"
)

// A host socket must be on an address of this host: a multicast group or
// the broadcast address is refused when the spec is read, with why.
func TestParseSpecRefusesGroupAndBroadcast(t *testing.T) {
	for _, tt := range []struct{ name, in, says string }{
		{"ipv4 multicast", "53:224.0.0.251:5353/udp", "multicast group"},
		{"ipv4 multicast tcp", "80:239.1.2.3:8080", "multicast group"},
		{"ipv6 multicast", "53:[ff02::fb]:5353/udp", "multicast group"},
		{"mapped multicast", "53:[::ffff:224.0.0.1]:5353/udp", "multicast group"},
		{"broadcast", "53:255.255.255.255:5353/udp", "broadcast address"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSpec(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "unicast") {
				t.Fatalf("ParseSpec(%q) = %v, want an error saying %q and what to use", tt.in, err, tt.says)
			}
		})
	}
}
