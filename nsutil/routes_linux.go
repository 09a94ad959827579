package nsutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// replyRulePriority puts the reply rule after the local table (0) and
// before the main table (32766).
const replyRulePriority = 100

// MarkReply marks the server's answers to connections and flows that the
// helper dialed from a client's address (see SetupReplyRouting).
const MarkReply = 0x6e730020

// replyTableName is the nftables table (one per family) of the reply mark.
const replyTableName = "nsbind-reply"

// SetupReplyRouting lets the server's replies reach sockets bound to a
// client's foreign address (IP_TRANSPARENT, fact 5 of DESIGN.md). The
// server answers from its loopback address to, say, 198.51.100.10; with
// only lo in the namespace there is no route to that address and the
// SYN-ACK would be lost, so the client's connection would hang. The rule
// sends packets that the namespace itself sends from a loopback address
// (127.0.0.0/8 or ::1, "iif lo") to RouteTable, whose only route delivers
// every destination locally, where the transparent socket takes them. It
// is scoped to loopback sources, so routing of anything else the server
// does is unchanged.
//
// That rule is consulted with the packet's source address, which a server
// answering from an unbound UDP socket has not chosen yet at its route
// lookup; IPv4 delivers packets routed out of lo locally anyway, but IPv6
// would try to forward them and drop them. So a route chain marks the
// server's answers (conntrack's reply direction, from loopback to an
// outside address) with MarkReply, which re-routes them by the rule above
// and by a second one on the mark. Where nftables is missing the mark is
// skipped: then only IPv6 UDP answers from unbound sockets are lost.
// It needs CAP_NET_ADMIN in the namespace.
func SetupReplyRouting() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	// The reply mark is best effort (see above).
	markErr := setupReplyMark()
	fams := []struct {
		family    int
		src, all  string
		mandatory bool
	}{
		{netlink.FAMILY_V4, "127.0.0.0/8", "0.0.0.0/0", true},
		{netlink.FAMILY_V6, "::1/128", "::/0", false},
	}
	for _, f := range fams {
		_, src, _ := net.ParseCIDR(f.src)
		_, all, _ := net.ParseCIDR(f.all)
		rule := netlink.NewRule()
		rule.Family = f.family
		rule.Src = src
		rule.IifName = "lo"
		rule.Table = RouteTable
		rule.Priority = replyRulePriority
		err := netlink.RuleAdd(rule)
		if err == nil && markErr == nil {
			byMark := netlink.NewRule()
			byMark.Family = f.family
			byMark.Mark = MarkReply
			byMark.Table = RouteTable
			byMark.Priority = replyRulePriority
			err = netlink.RuleAdd(byMark)
		}
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

// setupReplyMark installs the route chain that marks the server's answers
// to transparent dials with MarkReply.
func setupReplyMark() error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	for _, f := range families {
		if f.fam == nftables.TableFamilyIPv6 && !ipv6() {
			continue
		}
		t := c.AddTable(&nftables.Table{Name: replyTableName, Family: f.fam})
		ch := c.AddChain(&nftables.Chain{Name: "reply", Table: t, Type: nftables.ChainTypeRoute,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(-150))})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(saddrLoopback(f), daddrOutside(f), ctReply(),
			[]expr.Any{
				&expr.Immediate{Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, MarkReply)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
			})})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the reply mark: %w", err)
	}
	return nil
}

// saddrLoopback matches packets from a loopback address of the family.
func saddrLoopback(f familyRules) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff - f.addrLen, Len: f.addrLen},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: f.addrLen, Mask: f.mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: f.loopback},
	}
}

// ctReply matches packets in the reply direction of their conntrack flow.
func ctReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
	}
}
