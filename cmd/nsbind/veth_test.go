package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSubnets(t *testing.T) {
	cases := []struct {
		name    string
		in      []string
		v4, v6  string
		wantErr string
	}{
		{name: "none"},
		{name: "v4", in: []string{"10.99.0.0/30"}, v4: "10.99.0.0/30"},
		{name: "host bits are masked", in: []string{"10.99.0.5/29"}, v4: "10.99.0.0/29"},
		{name: "both", in: []string{"fd00:99::/64", "10.99.0.0/24"}, v4: "10.99.0.0/24", v6: "fd00:99::/64"},
		{name: "v4 /31", in: []string{"10.99.0.0/31"}, wantErr: "use a /30 or larger"},
		{name: "v6 /127", in: []string{"fd00::/127"}, wantErr: "use a /126 or larger"},
		{name: "two v4", in: []string{"10.1.0.0/30", "10.2.0.0/30"}, wantErr: "given twice for IPv4"},
		{name: "two v6", in: []string{"fd00:1::/64", "fd00:2::/64"}, wantErr: "given twice for IPv6"},
		{name: "not a CIDR", in: []string{"10.1.0.1"}, wantErr: `invalid --subnet "10.1.0.1"`},
		{name: "mapped", in: []string{"::ffff:10.1.0.0/126"}, wantErr: "without the ::ffff: prefix"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v4, v6, err := parseSubnets(c.in)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			str := func(p netip.Prefix) string {
				if !p.IsValid() {
					return ""
				}
				return p.String()
			}
			if str(v4) != c.v4 || str(v6) != c.v6 {
				t.Errorf("got %s, %s; want %q, %q", v4, v6, c.v4, c.v6)
			}
		})
	}
}
