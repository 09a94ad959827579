package forward

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSpec(t *testing.T) {
	v4 := netip.MustParseAddr
	tests := []struct {
		name string
		in   string
		want Spec
	}{
		{"same port both sides", "80", Spec{Inside: PortRange{80, 80}, Host: PortRange{80, 80}, Proto: TCP}},
		{"inside and host port", "80:8080", Spec{Inside: PortRange{80, 80}, Host: PortRange{8080, 8080}, Proto: TCP}},
		{"kernel picks host port", "80:0", Spec{Inside: PortRange{80, 80}, Host: PortRange{0, 0}, Proto: TCP}},
		{"ipv4 wildcard", "80:0.0.0.0:8080", Spec{Inside: PortRange{80, 80}, HostAddr: v4("0.0.0.0"), Host: PortRange{8080, 8080}, Proto: TCP}},
		{"ipv6 wildcard", "80:[::]:8080", Spec{Inside: PortRange{80, 80}, HostAddr: v4("::"), Host: PortRange{8080, 8080}, Proto: TCP}},
		{"ipv6 loopback", "80:[::1]:8080", Spec{Inside: PortRange{80, 80}, HostAddr: v4("::1"), Host: PortRange{8080, 8080}, Proto: TCP}},
		{"one ipv4 address", "80:192.0.2.7:8080", Spec{Inside: PortRange{80, 80}, HostAddr: v4("192.0.2.7"), Host: PortRange{8080, 8080}, Proto: TCP}},
		{"udp", "53:5353/udp", Spec{Inside: PortRange{53, 53}, Host: PortRange{5353, 5353}, Proto: UDP}},
		{"explicit tcp", "80:8080/tcp", Spec{Inside: PortRange{80, 80}, Host: PortRange{8080, 8080}, Proto: TCP}},
		{"protocol in capitals", "53/UDP", Spec{Inside: PortRange{53, 53}, Host: PortRange{53, 53}, Proto: UDP}},
		{"ranges", "8000-8009:18000-18009", Spec{Inside: PortRange{8000, 8009}, Host: PortRange{18000, 18009}, Proto: TCP}},
		{"range alone", "8000-8002", Spec{Inside: PortRange{8000, 8002}, Host: PortRange{8000, 8002}, Proto: TCP}},
		{"range with kernel ports", "8000-8002:0/udp", Spec{Inside: PortRange{8000, 8002}, Host: PortRange{0, 0}, Proto: UDP}},
		{"range on an address", "8000-8001:[::1]:9000-9001", Spec{Inside: PortRange{8000, 8001}, HostAddr: v4("::1"), Host: PortRange{9000, 9001}, Proto: TCP}},
		{"highest port", "65535:65535", Spec{Inside: PortRange{65535, 65535}, Host: PortRange{65535, 65535}, Proto: TCP}},
		{"ipv4-mapped ipv6", "80:[::ffff:127.0.0.1]:8080", Spec{Inside: PortRange{80, 80}, HostAddr: v4("::ffff:127.0.0.1"), Host: PortRange{8080, 8080}, Proto: TCP}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSpec(tt.in)
			if err != nil {
				t.Fatalf("ParseSpec(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			again, err := ParseSpec(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseSpec(%q) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseSpecRefuses(t *testing.T) {
	tests := []struct {
		name, in, says string
	}{
		{"empty", "", "no port"},
		{"not a number", "http", `"http" is not a number`},
		{"host not a number", "80:x", `host port "x" is not a number`},
		{"sign", "+80", "not a number"},
		{"space", "80 :8080", "not a number"},
		{"empty inside", ":8080", "inside port is empty"},
		{"empty host", "80:", "host port is empty"},
		{"empty host after address", "80:127.0.0.1:", "host port is empty"},
		{"inside port zero", "0:8080", "inside port 0"},
		{"inside above 65535", "65536:80", "above 65535"},
		{"host above 65535", "80:70000", "above 65535"},
		{"huge number", "80:99999999999999999999", "above 65535"},
		{"reversed inside range", "8009-8000:18000-18009", "reversed"},
		{"reversed host range", "8000-8009:18009-18000", "reversed"},
		{"empty range end", "8000-:9000", "range end is empty"},
		{"unequal ranges", "8000-8009:18000-18004", "10 ports"},
		{"range onto one port", "8000-8002:9000", "ranges map port by port"},
		{"host range from zero", "80-81:0-1", "cannot start at 0"},
		{"unknown protocol", "80/sctp", `unknown protocol "sctp"`},
		{"empty protocol", "80/", "protocol after '/' is empty"},
		{"unclosed bracket", "80:[::1:8080", "missing ']'"},
		{"bracket without port", "80:[::1]", "expected ':HOSTPORT'"},
		{"bracket with junk", "80:[::1]x8080", "expected ':HOSTPORT'"},
		{"stray bracket", "80:::1]:8080", "brackets"},
		{"bare ipv6", "80:::1:8080", "brackets"},
		{"ipv4 in brackets", "80:[127.0.0.1]:8080", "not an IPv6 address"},
		{"bad ipv4", "80:300.1.1.1:8080", "not an IPv4 address"},
		{"hostname", "80:localhost:8080", "not an IPv4 address"},
		{"bad ipv6", "80:[::g]:8080", "not an IPv6 address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseSpec(tt.in)
			if err == nil {
				t.Fatalf("ParseSpec(%q) succeeded", tt.in)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.says) {
				t.Fatalf("ParseSpec(%q): %q does not say %q", tt.in, msg, tt.says)
			}
			if !strings.Contains(msg, `"`+tt.in+`"`) {
				t.Fatalf("ParseSpec(%q): %q does not quote the spec", tt.in, msg)
			}
		})
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"80", "80:8080", "80:0", "80:0.0.0.0:8080", "80:[::]:8080",
		"53:5353/udp", "8000-8009:18000-18009", "80:[fe80::1%eth0]:80", "1-2:0/tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSpec(in)
		if err != nil {
			return
		}
		again, err := ParseSpec(s.String())
		if err != nil {
			t.Fatalf("ParseSpec(%q) = %+v, whose String %q does not parse: %v", in, s, s.String(), err)
		}
		if again != s {
			t.Fatalf("ParseSpec(%q) = %+v, but ParseSpec(%q) = %+v", in, s, s.String(), again)
		}
		if s.Inside.Start == 0 || s.Inside.End < s.Inside.Start {
			t.Fatalf("ParseSpec(%q) accepted inside range %v", in, s.Inside)
		}
	})
}

func TestExpand(t *testing.T) {
	parse := func(args ...string) []Spec {
		var out []Spec
		for _, a := range args {
			s, err := ParseSpec(a)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	t.Run("default loopback both families", func(t *testing.T) {
		bs, err := Expand(parse("80:8080"))
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != 2 || bs[0].Host.String() != "127.0.0.1:8080" || bs[1].Host.String() != "[::1]:8080" || !bs[0].Default {
			t.Fatalf("got %+v", bs)
		}
	})
	t.Run("range port by port", func(t *testing.T) {
		bs, err := Expand(parse("8000-8002:0.0.0.0:18000-18002"))
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range bs {
			if b.Inside != uint16(8000+i) || b.Host.Port() != uint16(18000+i) {
				t.Fatalf("binding %d: %+v", i, b)
			}
		}
	})
	conflicts := []struct {
		name  string
		specs []string
	}{
		{"same socket twice", []string{"80:8080", "81:8080"}},
		{"explicit and default loopback", []string{"80:8080", "81:127.0.0.1:8080"}},
		{"ipv4 wildcard and loopback", []string{"80:0.0.0.0:8080", "81:127.0.0.1:8080"}},
		{"dual-stack wildcard and ipv4", []string{"80:[::]:8080", "81:192.0.2.1:8080"}},
		{"overlapping ranges", []string{"80-82:8080-8082", "90:8082"}},
	}
	for _, tt := range conflicts {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Expand(parse(tt.specs...))
			if err == nil || !strings.Contains(err.Error(), "both claim") {
				t.Fatalf("Expand(%q) = %v, want a conflict", tt.specs, err)
			}
		})
	}
	fine := [][]string{
		{"80:8080", "80:8081"},
		{"80:8080/tcp", "80:8080/udp"},
		{"80:0", "81:0"},
		{"80:127.0.0.1:8080", "81:127.0.0.2:8080"},
	}
	for _, specs := range fine {
		if _, err := Expand(parse(specs...)); err != nil {
			t.Errorf("Expand(%q): %v", specs, err)
		}
	}
}
