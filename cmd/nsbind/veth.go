package main

import (
	"fmt"
	"net/netip"
)

// The data paths of --net.
const (
	netRelay = "relay" // the default: published ports are relayed by the helper
	netVeth  = "veth"  // a veth pair; published ports also reach the server through the kernel
)

// parseSubnets reads the --subnet values: at most one IPv4 subnet with room
// for two addresses (a /30 or larger) and at most one IPv6 subnet (a /126 or
// larger; a /64 is usual). A family not given is the zero Prefix: nsbind
// chooses one.
func parseSubnets(vals []string) (v4, v6 netip.Prefix, err error) {
	for _, s := range vals {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return v4, v6, fmt.Errorf("invalid --subnet %q: use a CIDR, e.g. --subnet 10.99.0.0/30 or --subnet fd00:99::/64", s)
		}
		p = p.Masked()
		switch {
		case p.Addr().Is4():
			if v4.IsValid() {
				return v4, v6, fmt.Errorf("--subnet given twice for IPv4 (%s and %s): give one IPv4 and at most one IPv6 subnet", v4, p)
			}
			if p.Bits() > 30 {
				return v4, v6, fmt.Errorf("--subnet %s is too small: the veth needs two addresses and a /%d has no room for them; use a /30 or larger", s, p.Bits())
			}
			v4 = p
		default:
			if p.Addr().Is4In6() {
				return v4, v6, fmt.Errorf("invalid --subnet %q: write an IPv4 subnet without the ::ffff: prefix", s)
			}
			if v6.IsValid() {
				return v4, v6, fmt.Errorf("--subnet given twice for IPv6 (%s and %s): give one IPv4 and at most one IPv6 subnet", v6, p)
			}
			if p.Bits() > 126 {
				return v4, v6, fmt.Errorf("--subnet %s is too small: the veth needs two addresses; use a /126 or larger (a /64 is usual)", s)
			}
			v6 = p
		}
	}
	return v4, v6, nil
}
