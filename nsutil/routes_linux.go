package nsutil

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// replyRulePriority puts the reply rule after the local table (0) and
// before the main table (32766).
const replyRulePriority = 100

// SetupReplyRouting lets the server's replies reach sockets bound to a
// client's foreign address (IP_TRANSPARENT, fact 5 of DESIGN.md). The
// server answers from its loopback address to, say, 198.51.100.10; with
// only lo in the namespace there is no route to that address and the
// SYN-ACK would be lost, so the client's connection would hang. The rule
// sends packets that the namespace itself sends from a loopback address
// (127.0.0.0/8 or ::1, "iif lo") to RouteTable, whose only route delivers
// every destination locally, where the transparent socket takes them. It
// is scoped to loopback sources, so routing of anything else the server
// does is unchanged. It needs CAP_NET_ADMIN in the namespace.
func SetupReplyRouting() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	families := []struct {
		family    int
		src, all  string
		mandatory bool
	}{
		{netlink.FAMILY_V4, "127.0.0.0/8", "0.0.0.0/0", true},
		{netlink.FAMILY_V6, "::1/128", "::/0", false},
	}
	for _, f := range families {
		_, src, _ := net.ParseCIDR(f.src)
		_, all, _ := net.ParseCIDR(f.all)
		rule := netlink.NewRule()
		rule.Family = f.family
		rule.Src = src
		rule.IifName = "lo"
		rule.Table = RouteTable
		rule.Priority = replyRulePriority
		err := netlink.RuleAdd(rule)
		if err == nil {
			// The table is the one outbound UDP uses too (netfilter_linux.go);
			// whichever comes first adds the route.
			err = netlink.RouteAdd(&netlink.Route{
				LinkIndex: lo.Attrs().Index,
				Dst:       all,
				Table:     RouteTable,
				Type:      unix.RTN_LOCAL,
				Scope:     netlink.SCOPE_HOST,
				Family:    f.family,
			})
			if errors.Is(err, syscall.EEXIST) {
				err = nil
			}
		}
		if err != nil {
			if !f.mandatory && (errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EOPNOTSUPP)) {
				continue // no IPv6 in this kernel
			}
			return fmt.Errorf("adding the reply route for %s: %w", f.src, err)
		}
	}
	return nil
}
