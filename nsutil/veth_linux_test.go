package nsutil

import (
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestNthSubnet(t *testing.T) {
	cases := []struct {
		name string
		pool string
		bits int
		i    int
		want string
	}{
		{"first v4", "10.213.0.0/16", 30, 0, "10.213.0.0/30"},
		{"second v4", "10.213.0.0/16", 30, 1, "10.213.0.4/30"},
		{"v4 across a byte", "10.213.0.0/16", 30, 64, "10.213.1.0/30"},
		{"last v4", "10.213.0.0/16", 30, 16383, "10.213.255.252/30"},
		{"first v6", "fd6e:7362:6e64::/48", 64, 0, "fd6e:7362:6e64::/64"},
		{"v6", "fd6e:7362:6e64::/48", 64, 0x1234, "fd6e:7362:6e64:1234::/64"},
		{"last v6", "fd6e:7362:6e64::/48", 64, 0xffff, "fd6e:7362:6e64:ffff::/64"},
		{"v6 low bits", "fd00::/120", 126, 3, "fd00::c/126"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := nthSubnet(netip.MustParsePrefix(c.pool), c.bits, c.i)
			if !ok || got.String() != c.want {
				t.Errorf("nthSubnet(%s, %d, %d) = %s, %v; want %s", c.pool, c.bits, c.i, got, ok, c.want)
			}
		})
	}
	if p, ok := nthSubnet(netip.MustParsePrefix("10.213.0.0/16"), 30, 16384); ok {
		t.Errorf("block 16384 of a /16 in /30s: got %s, want none", p)
	}
}

func TestPickSubnet(t *testing.T) {
	used := []usedPrefix{
		{netip.MustParsePrefix("10.213.0.0/30"), "nsb1"},
		{netip.MustParsePrefix("10.213.0.6/32"), "x"},
		{netip.MustParsePrefix("192.0.2.0/24"), "eth0"},
	}
	pool := netip.MustParsePrefix("10.213.0.0/16")
	cases := []struct {
		name, want, wantErr string
		ask                 netip.Prefix
	}{
		{name: "first free block", want: "10.213.0.8/30"},
		{name: "asked and free", ask: netip.MustParsePrefix("10.99.0.0/29"), want: "10.99.0.0/29"},
		{name: "asked and taken", ask: netip.MustParsePrefix("192.0.2.128/25"), wantErr: "subnet 192.0.2.128/25 overlaps 192.0.2.0/24 on eth0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := pickSubnet(c.ask, pool, 30, used)
			if c.wantErr != "" {
				var e *SubnetInUseError
				if !errors.As(err, &e) || err.Error() != c.wantErr {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got.String() != c.want {
				t.Fatalf("got %s, %v; want %s", got, err, c.want)
			}
		})
	}
	full := []usedPrefix{{pool, "all"}}
	if _, err := pickSubnet(netip.Prefix{}, pool, 30, full); err == nil || !strings.Contains(err.Error(), "--subnet") {
		t.Errorf("a full pool: err %v, want one pointing to --subnet", err)
	}
}

// Routes as broad as a default route (a VPN's halves of the address space)
// do not rule out the veth's subnets; narrower ones do.
func TestRouteCounts(t *testing.T) {
	for _, c := range []struct {
		p    string
		want bool
	}{
		{"0.0.0.0/0", false}, {"0.0.0.0/1", false}, {"128.0.0.0/1", false},
		{"10.0.0.0/8", true}, {"10.213.0.0/16", true}, {"10.213.0.1/32", true},
		{"::/0", false}, {"fd00::/8", false}, {"2000::/3", false},
		{"fd00::/16", true}, {"fd6e:7362:6e64::/64", true},
	} {
		if got := routeCounts(netip.MustParsePrefix(c.p)); got != c.want {
			t.Errorf("routeCounts(%s) = %v, want %v", c.p, got, c.want)
		}
	}
}

func TestEnds(t *testing.T) {
	for _, c := range []struct{ p, host, inside string }{
		{"10.213.0.4/30", "10.213.0.5/30", "10.213.0.6/30"},
		{"fd6e:7362:6e64:7::/64", "fd6e:7362:6e64:7::1/64", "fd6e:7362:6e64:7::2/64"},
	} {
		h, i := ends(netip.MustParsePrefix(c.p))
		if h.String() != c.host || i.String() != c.inside {
			t.Errorf("ends(%s) = %s, %s; want %s, %s", c.p, h, i, c.host, c.inside)
		}
	}
}

func TestVethNameFitsIFNAMSIZ(t *testing.T) {
	for attempt := range 3 {
		if n := vethName(4194304, attempt); len(n) > 15 || !strings.HasPrefix(n, "nsb") {
			t.Errorf("attempt %d: %q", attempt, n)
		}
	}
	if vethName(1, 1) == vethName(1, 2) {
		t.Errorf("retries must not repeat a name")
	}
}

// ProbeVeth is what nsbind doctor reports: as root here it must find
// everything --net=veth needs; as an ordinary user, the missing capability.
func TestProbeVeth(t *testing.T) {
	err := ProbeVeth()
	if os.Getuid() != 0 {
		if !errors.Is(err, ErrNoNetAdmin) {
			t.Fatalf("as uid %d: %v, want ErrNoNetAdmin", os.Getuid(), err)
		}
		return
	}
	if err != nil {
		t.Fatalf("as root: %v", err)
	}
	// The probe leaves nothing behind.
	if out, _ := exec.Command("ip", "-o", "link").CombinedOutput(); strings.Contains(string(out), "nsbp") {
		t.Errorf("a probe interface stayed:\n%s", out)
	}
}

// The run's table has the owner flag: another netlink socket may not
// delete it, and it is gone as soon as its own socket is closed.
func TestOwnedTable(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs CAP_NET_ADMIN on the host (root); scripts/test.sh runs this as root")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatal("nft is not installed (scripts/test.sh installs it)")
		}
		t.Skip("nft is not installed")
	}
	name := "nsbtest" + strconv.Itoa(os.Getpid())
	conn, _, err := ownedTable(name)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	out, err := exec.Command(nft, "list", "table", "inet", name).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "flags owner") {
		t.Fatalf("nft list table inet %s: %v\n%s", name, err, out)
	}
	if out, err := exec.Command(nft, "delete", "table", "inet", name).CombinedOutput(); err == nil {
		t.Fatalf("another process deleted the owned table:\n%s", out)
	}
	conn.CloseLasting()
	if out, err := exec.Command(nft, "list", "table", "inet", name).CombinedOutput(); err == nil {
		t.Fatalf("the table outlived its socket:\n%s", out)
	}
}
