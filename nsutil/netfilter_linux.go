package nsutil

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// How outbound connections leave the namespace (fact 9 of DESIGN.md), as
// rules the helper programs over netlink in the namespace it runs in:
//
//   - Routes: `default dev lo src 127.0.0.1` and `default dev lo` (IPv6), so
//     a connect() to any address is routed at all (without them it fails at
//     once with ENETUNREACH, which is what --isolated keeps). The IPv4
//     source is pinned to 127.0.0.1: lo has no address of global scope, and
//     without `src` IPv4 sockets would get 0.0.0.0 as their own address.
//   - TCP: the first packet of a connection (a SYN) to an outside address
//     or to a forwarded loopback port goes to NFQUEUE. The helper dials the
//     destination with a host socket first and only then gives the verdict:
//     accepted with MarkAccept (the nat OUTPUT chain then redirects the
//     connection to the helper's listener, SO_ORIGINAL_DST tells it where it
//     was going), or accepted with MarkRefuse that a reject rule turns into
//     a TCP reset (ECONNREFUSED), or dropped after the helper answered it
//     with an ICMP unreachable of its own (EHOSTUNREACH, ENETUNREACH,
//     EACCES; see Queue.Verdict), or just dropped (ETIMEDOUT: the program's
//     own SYN retries then time out). So the
//     program's connect() fails the way the host's did, before the handshake
//     completes; a plain redirect would complete it first and then reset.
//   - UDP: datagrams to an outside address get MarkUDP in a route chain,
//     which re-routes them through policy table RouteTable (`local default
//     dev lo`) so that they are delivered locally, where TPROXY in
//     PREROUTING hands them to the helper's transparent socket with their
//     original destination (IP_RECVORIGDSTADDR).
//
// Without NFQUEUE, TPROXY or nat, the rules cannot be made and the caller
// runs isolated.

// Marks on packets. The queue verdict sets MarkAccept or MarkRefuse;
// MarkUDP is set by the route chain.
const (
	MarkAccept = 0x6e730001
	MarkRefuse = 0x6e730002
	MarkUDP    = 0x6e730010
)

// RouteTable is the policy routing table that delivers marked UDP locally.
const RouteTable = 0x6e73

// tableName is the nftables table (one per family) holding nsbind's rules.
const tableName = "nsbind"

// ErrNoNetfilter is returned (wrapped) when the kernel lacks a netfilter
// feature outbound connections need.
var ErrNoNetfilter = errors.New("the kernel lacks netfilter support for outbound connections")

// OutboundRules says where the helper listens for what the rules redirect.
type OutboundRules struct {
	// Queue is the NFQUEUE number that gets the SYNs.
	Queue uint16
	// TCPPort is the helper's listener on 127.0.0.1 and [::1] that queued
	// and accepted connections are redirected to.
	TCPPort uint16
	// UDPPort is the helper's transparent UDP socket on 127.0.0.1 and [::1].
	UDPPort uint16
	// Loopback are loopback addresses and TCP ports inside that are
	// forwarded to the host too (--to-host, a resolver on loopback): their
	// SYNs are queued like outside ones.
	Loopback []netip.AddrPort
}

// SetupOutbound installs the routes and the netfilter rules described
// above in the caller's network namespace. It needs CAP_NET_ADMIN there.
// On error nothing it added is left behind.
func SetupOutbound(r OutboundRules) error {
	if err := setupRules(r); err != nil {
		return err
	}
	if err := setupRoutes(); err != nil {
		removeRules()
		return err
	}
	return nil
}

// setupRoutes adds the default routes through lo and the policy route for
// marked UDP.
func setupRoutes() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	idx := lo.Attrs().Index
	routes := []netlink.Route{
		{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Src: net.IPv4(127, 0, 0, 1), Scope: netlink.SCOPE_LINK},
		{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Table: RouteTable, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST},
	}
	families := []int{unix.AF_INET}
	if ipv6() {
		routes = append(routes,
			netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Src: net.IPv6loopback},
			netlink.Route{LinkIndex: idx, Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, Table: RouteTable, Type: unix.RTN_LOCAL})
		families = append(families, unix.AF_INET6)
	}
	for _, rt := range routes {
		err := netlink.RouteAdd(&rt)
		if errors.Is(err, syscall.EEXIST) {
			// RouteTable is shared with the reply route of transparent
			// dials (routes_linux.go); with --net=veth the default route
			// goes through eth0 already, and the rules alone take
			// outbound connections to the helper.
			continue
		}
		if err != nil {
			return fmt.Errorf("adding route %s table %d: %w", rt.Dst, rt.Table, err)
		}
	}
	for _, family := range families {
		rule := netlink.NewRule()
		rule.Family = family
		rule.Mark = MarkUDP
		rule.Table = RouteTable
		rule.Priority = 100
		if err := netlink.RuleAdd(rule); err != nil {
			return fmt.Errorf("adding the policy rule for UDP: %w", err)
		}
	}
	return nil
}

// ipv6 reports whether the kernel has IPv6 (not booted with
// ipv6.disable=1): without it, outbound connections are IPv4 only, as on
// the host.
func ipv6() bool {
	_, err := os.Stat("/proc/net/if_inet6")
	return err == nil
}

// removeRules deletes nsbind's tables, if any.
func removeRules() {
	c, err := nftables.New()
	if err != nil {
		return
	}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyIPv6} {
		c.DelTable(&nftables.Table{Name: tableName, Family: fam})
	}
	c.Flush()
}

func setupRules(r OutboundRules) error {
	// NFQUEUE through nft_compat (the xtables target) first: kernels built
	// without the native queue statement (CONFIG_NFT_QUEUE unset, as on
	// the machine this was written on) still have it, and a failed native
	// attempt costs ~30 ms there (the kernel looks for a module). Kernels
	// without nft_compat get the native statement.
	err := programRules(r, true)
	if err != nil {
		removeRules()
		err2 := programRules(r, false)
		if err2 == nil {
			return nil
		}
		removeRules()
		return fmt.Errorf("%w: installing nftables rules: %v (with the native queue statement: %v)", ErrNoNetfilter, err, err2)
	}
	return nil
}

// Registers of nftables expressions.
const (
	reg1 = 1 // NFT_REG_1, 128 bits
	reg2 = 2 // NFT_REG_2
)

type familyRules struct {
	fam       nftables.TableFamily
	saddrOff  uint32
	daddrOff  uint32
	addrLen   uint32
	loopback  []byte // value of daddr & mask for loopback destinations
	mask      []byte
	localhost netip.Addr
}

var families = []familyRules{
	{
		fam: nftables.TableFamilyIPv4, saddrOff: 12, daddrOff: 16, addrLen: 4,
		loopback: []byte{127, 0, 0, 0}, mask: []byte{255, 0, 0, 0},
		localhost: netip.AddrFrom4([4]byte{127, 0, 0, 1}),
	},
	{
		fam: nftables.TableFamilyIPv6, saddrOff: 8, daddrOff: 24, addrLen: 16,
		loopback: netip.IPv6Loopback().AsSlice(), mask: net.CIDRMask(128, 128),
		localhost: netip.IPv6Loopback(),
	},
}

func programRules(r OutboundRules, compat bool) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	for _, f := range families {
		if f.fam == nftables.TableFamilyIPv6 && !ipv6() {
			continue
		}
		t := c.AddTable(&nftables.Table{Name: tableName, Family: f.fam})
		chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio int32) *nftables.Chain {
			return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio))})
		}
		rule := func(ch *nftables.Chain, exprs ...expr.Any) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
		}

		// Connection tracking is on in the namespace for the rules below
		// (the redirect, the direction tests), and it would track every
		// packet of every connection, the relayed ones on loopback too:
		// a tenth of the relay's work per new connection and per packet.
		// Loopback to loopback needs no tracking but where the redirect
		// rewrites it: a SYN to a forwarded loopback port, and the
		// helper's listener's side of redirected connections. The raw
		// priority runs before conntrack and before the redirect.
		notrack := chain("notrack", nftables.ChainTypeFilter, nftables.ChainHookOutput, -300)
		for _, ap := range r.Loopback {
			if ap.Addr().Is4() != (f.fam == nftables.TableFamilyIPv4) {
				continue
			}
			rule(notrack, cat(l4proto(unix.IPPROTO_TCP), daddrIs(f, ap.Addr()), dportIs(ap.Port()), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		}
		rule(notrack, cat(l4proto(unix.IPPROTO_TCP), sportIs(r.TCPPort), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		rule(notrack, cat(addrLoopback(f, f.saddrOff), addrLoopback(f, f.daddrOff), []expr.Any{&expr.Notrack{}})...)

		// The SYN of a new outbound connection goes to the helper; one to
		// an address of the namespace's own (its eth0 address with
		// --net=veth) stays inside, as on any host.
		queue := chain("queue", nftables.ChainTypeFilter, nftables.ChainHookOutput, -150)
		rule(queue, cat(tcpSYN(), daddrOutside(f), daddrLocal(), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		rule(queue, cat(tcpSYN(), daddrOutside(f), queueTo(r.Queue, compat))...)
		for _, ap := range r.Loopback {
			if ap.Addr().Is4() != (f.fam == nftables.TableFamilyIPv4) {
				continue
			}
			rule(queue, cat(tcpSYN(), daddrIs(f, ap.Addr()), dportIs(ap.Port()), queueTo(r.Queue, compat))...)
		}

		// The helper's answer, when the host could not connect.
		reject := chain("reject", nftables.ChainTypeFilter, nftables.ChainHookOutput, -140)
		rule(reject, markIs(MarkRefuse, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})...)

		// Connections the host accepted go to the helper's listener.
		nat := chain("redirect", nftables.ChainTypeNAT, nftables.ChainHookOutput, -100)
		rule(nat, cat(markIs(MarkAccept), l4proto(unix.IPPROTO_TCP),
			[]expr.Any{
				&expr.Immediate{Register: reg1, Data: binary.BigEndian.AppendUint16(nil, r.TCPPort)},
				&expr.Redir{RegisterProtoMin: reg1},
			})...)

		// Outbound UDP: mark, re-route locally, hand to the helper.
		mark := chain("udpmark", nftables.ChainTypeRoute, nftables.ChainHookOutput, -150)
		rule(mark, cat(l4proto(unix.IPPROTO_UDP), daddrOutside(f), daddrLocal(), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		// Only datagrams of flows started inside (conntrack's original
		// direction): the server's answers to clients that came in (a
		// transparent relay flow, a --net=veth client) are the reply
		// direction of their flows and are routed as usual.
		rule(mark, cat(l4proto(unix.IPPROTO_UDP), daddrOutside(f), ctOriginal(),
			[]expr.Any{
				&expr.Immediate{Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, MarkUDP)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
			})...)
		tproxy := chain("tproxy", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, -150)
		rule(tproxy, cat(markIs(MarkUDP), l4proto(unix.IPPROTO_UDP),
			[]expr.Any{
				&expr.Immediate{Register: reg1, Data: f.localhost.AsSlice()},
				&expr.Immediate{Register: reg2, Data: binary.BigEndian.AppendUint16(nil, r.UDPPort)},
				&expr.TProxy{Family: byte(f.fam), TableFamily: byte(f.fam), RegAddr: reg1, RegPort: reg2},
			})...)
	}
	if err := c.Flush(); err != nil {
		return err
	}
	return nil
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{p}},
	}
}

// tcpSYN matches the first packet of a TCP connection: SYN set, ACK, RST and
// FIN clear.
func tcpSYN() []expr.Any {
	return append(l4proto(unix.IPPROTO_TCP),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0x02}},
	)
}

// addrLoopback matches a loopback source (off is saddrOff) or
// destination (daddrOff).
func addrLoopback(f familyRules, off uint32) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: f.addrLen},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: f.addrLen, Mask: f.mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: f.loopback},
	}
}

// daddrOutside matches destinations outside the namespace's loopback.
func daddrOutside(f familyRules) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: f.addrLen, Mask: f.mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: f.loopback},
	}
}

// daddrLocal matches destinations that are addresses of the namespace.
func daddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, unix.RTN_LOCAL)},
	}
}

func daddrIs(f familyRules, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a.AsSlice()},
	}
}

func sportIs(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, p)},
	}
}

func dportIs(p uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, p)},
	}
}

func markIs(m uint32, then ...expr.Any) []expr.Any {
	return append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, m)},
	}, then...)
}

// queueTo sends the packet to NFQUEUE num: the native queue statement, or
// the xtables NFQUEUE target (revision 1: queue number, queue count).
func queueTo(num uint16, compat bool) []expr.Any {
	if !compat {
		return []expr.Any{&expr.Queue{Num: num, Total: 1}}
	}
	info := make(xt.Unknown, 8) // struct xt_NFQ_info_v1, padded to XT_ALIGN
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], 1)
	return []expr.Any{&expr.Target{Name: "NFQUEUE", Rev: 1, Info: &info}}
}

// ProbeOutbound tells whether this kernel has what outbound connections
// need (nf_tables with nat and reject, NFQUEUE native or through
// nft_compat, TPROXY, policy routing) by installing the real rules in a
// throwaway network namespace. It needs CAP_NET_ADMIN in the caller's user
// namespace: call it in the helper, or in any process nsutil.Start made
// (this is what `nsbind doctor` reports). A nil error means supported;
// otherwise the error wraps ErrNoNetfilter or says why it could not tell.
// The probe runs on a thread of its own that Go discards afterwards; should
// that be the main thread, Go parks it instead, still in the throwaway
// namespace, so /proc/self/net may show that one (/proc/thread-self/net
// does not).
func ProbeOutbound() error {
	errc := make(chan error, 1)
	go func() {
		// A network namespace is per thread: this thread is never
		// unlocked, so Go ends it with the goroutine and no other
		// goroutine ever runs in the throwaway namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("creating a network namespace to probe in: %w", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			errc <- fmt.Errorf("bringing lo up in the probe namespace: %w", err)
			return
		}
		errc <- SetupOutbound(OutboundRules{Queue: 0, TCPPort: 1, UDPPort: 1})
	}()
	return <-errc
}

// ctOriginal matches packets in the original direction of their conntrack
// flow (the direction of the flow's first packet).
func ctOriginal() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
	}
}

// vethGuardTable is the inet table of the rules that guard the namespace's
// end of the veth (GuardVeth).
const vethGuardTable = "nsbind-veth"

// guardVeth installs, in the caller's network namespace, the rules that
// keep the namespace's eth0 (--net=veth) to what the run publishes. They
// are the inside half of what the host's table (hostrules_linux.go)
// enforces, so that a connection that may not leave fails at once inside
// rather than being dropped on the host; the host's half holds even when a
// server with CAP_NET_ADMIN inside (--root) removes these.
//
//   - input: new connections arriving on eth0 only to the published ports
//     (tcp and udp are the server's ports inside); everything else new is
//     dropped. Replies and ICMP errors of connections are not new.
//   - output: nothing a program starts leaves through eth0: outbound
//     connections go to the helper (SetupOutbound's rules: their SYNs are
//     redirected to loopback, DNAT in conntrack's terms, and their
//     datagrams carry MarkUDP), and anything else in the original direction
//     of its connection, any protocol, is refused with "network
//     unreachable" — as without a route. The output hook still names the
//     device of the first route (eth0) after the redirect re-routed a
//     packet to lo, hence the DNAT and mark tests.
//   - postrouting: whatever still leaves through eth0 in the original
//     direction of its connection is dropped; by then the device is the
//     one the packet really leaves by.
func guardVeth(tcp, udp []uint16) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("opening nftables: %w", err)
	}
	t := c.AddTable(&nftables.Table{Name: vethGuardTable, Family: nftables.TableFamilyINet})
	chain := func(name string, hook *nftables.ChainHook) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: nftables.ChainPriorityFilter})
	}
	rule := func(ch *nftables.Chain, exprs ...[]expr.Any) {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: cat(exprs...)})
	}
	iif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: nftIfname(VethInside)},
	}
	oif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: nftIfname(VethInside)},
	}
	original := []expr.Any{
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0}},
	}

	in := chain("input", nftables.ChainHookInput)
	for _, p := range []struct {
		proto byte
		name  string
		ports []uint16
	}{{unix.IPPROTO_TCP, "tcp", tcp}, {unix.IPPROTO_UDP, "udp", udp}} {
		set := &nftables.Set{Table: t, Name: "published_" + p.name, KeyType: nftables.TypeInetService}
		var elems []nftables.SetElement
		for _, port := range p.ports {
			elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint16(nil, port)})
		}
		if err := c.AddSet(set, elems); err != nil {
			return fmt.Errorf("adding the set of published %s ports: %w", p.name, err)
		}
		rule(in, iif, ctStateNew(), l4proto(p.proto), []expr.Any{
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: reg1, SetName: set.Name, SetID: set.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		})
	}
	rule(in, iif, ctStateNew(), []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})

	out := chain("output", nftables.ChainHookOutput)
	rule(out, oif, original, []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binary.NativeEndian.AppendUint32(nil, ctStatusDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binary.NativeEndian.AppendUint32(nil, MarkUDP)},
		&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_NO_ROUTE},
	})
	post := chain("postrouting", nftables.ChainHookPostrouting)
	rule(post, oif, original, []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing the rules of %s: %w", VethInside, err)
	}
	return nil
}
