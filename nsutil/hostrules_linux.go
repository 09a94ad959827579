package nsutil

import (
	"fmt"
	"net/netip"
	"os"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftTableOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to the
// netlink socket that created it. Only that socket may change it, and the
// kernel deletes it, with every chain, set and rule in it, when the socket
// is closed — also when the process holding it is killed. x/sys/unix does
// not name it yet.
const nftTableOwner = 0x2

// ctDirReply is IP_CT_DIR_REPLY, the reply direction of a conntrack
// entry.
const ctDirReply = 1

// ctStatusDstNAT is IPS_DST_NAT, the conntrack status bit of a connection
// whose destination was translated.
const ctStatusDstNAT = 0x20

// PublishedPort is one published host socket, for the rules that bring
// its clients in through the kernel.
type PublishedPort struct {
	// Proto is "tcp" or "udp".
	Proto string
	// Host is the host socket's address; loopback addresses get no rule
	// (the kernel cannot route them into another namespace without
	// net.ipv4.conf.*.route_localnet, a global switch nsbind leaves alone).
	Host netip.AddrPort
	// Inside is the server's port inside.
	Inside uint16
}

// HostRules describes the host rules of a --net=veth run.
type HostRules struct {
	Veth  Veth
	Ports []PublishedPort
	Fwd   Forwarding
}

// HostTable is a run's nftables table on the host, "inet" family, named
// after its veth. It lives as long as the netlink socket that created it:
// keep the HostTable for the run's whole life and Close it at the end.
type HostTable struct {
	Name string
	mu   sync.Mutex
	conn *nftables.Conn
}

// Close closes the netlink socket; the kernel then deletes the table.
func (t *HostTable) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	err := t.conn.CloseLasting()
	t.conn = nil
	return err
}

// ownedTable opens a lasting nftables connection and creates on it an
// inet table named name with the owner flag. google/nftables v0.3.0
// always sends table flags 0 (and the kernel refuses to add the owner flag
// to an existing table), so the table itself is created here with a batch
// of our own on the library's socket, which the library then keeps using
// for the chains and rules: the socket that owns the table is the only
// one that may change it.
func ownedTable(name string) (*nftables.Conn, *nftables.Table, error) {
	var sock *netlink.Conn
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		sock = c
		return nil
	}))
	if err != nil {
		return nil, nil, fmt.Errorf("opening nftables: %w", err)
	}
	table := &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: []byte(name + "\x00")},
		{Type: unix.NFTA_TABLE_FLAGS, Data: binaryutil.BigEndian.PutUint32(nftTableOwner)},
	})
	if err != nil {
		conn.CloseLasting()
		return nil, nil, err
	}
	nfgen := func(family uint8, resID uint16) []byte {
		return append([]byte{family, unix.NFNETLINK_V0}, binaryutil.BigEndian.PutUint16(resID)...)
	}
	msgs := []netlink.Message{
		{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data:   nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
		},
		{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
				Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl,
			},
			Data: append(nfgen(unix.NFPROTO_INET, 0), attrs...),
		},
		{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data:   nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
		},
	}
	// One acknowledgement, for the table; mdlayher/netlink turns an error
	// acknowledgement into an error. Without it the rules would go into
	// whatever table of that name exists (EEXIST: one without the owner
	// flag, which outlives the run).
	_, err = sock.SendMessages(msgs)
	if err == nil {
		_, err = sock.Receive()
	}
	if err != nil {
		conn.CloseLasting()
		return nil, nil, fmt.Errorf("creating nftables table inet %s: %w", name, err)
	}
	return conn, table, nil
}

// probeOwnedTable creates an owned table with a NAT chain and closes it,
// which deletes it.
func probeOwnedTable() error {
	conn, table, err := ownedTable(fmt.Sprintf("nsbind-probe-%d", os.Getpid()))
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	conn.AddChain(&nftables.Chain{
		Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("adding a NAT chain: %w", err)
	}
	return nil
}

// InstallHostRules creates the run's table on the host, named after the
// veth, with:
//
//   - prerouting (nat): a client that arrives on an interface that forwards
//     and asks for a published port on a host address other than loopback
//     is sent to the server's address inside (DNAT). The client's address
//     is kept, so the server sees the real client. Clients arriving on an
//     interface that does not forward get no DNAT: the kernel would drop
//     them after it (forwarding is decided by the interface a packet
//     arrives on), so they reach the host socket and its relay instead.
//   - forward and input (filter): from the namespace, only replies pass:
//     packets of connections that were opened towards the namespace (the
//     DNAT ones, or the host's own to a published port), whose reply
//     source is the namespace's address. Everything a program inside
//     starts itself is dropped, whatever its protocol and destination: the
//     host's addresses on the veth and elsewhere, and other machines
//     through any interface that forwards. Outbound connections leave
//     through host sockets the helper holds (which the run's policy
//     governs), never through the kernel path; a server that removed the
//     rules inside its namespace (it can with --root) still gets nothing
//     out, since it cannot change the host's.
//   - forward (filter), into the namespace: only connections the
//     prerouting chain sent there may start, so the rest of the namespace
//     is not reachable from other machines that route to its subnet.
//   - output (filter): the host's own programs, any local user's, may start
//     connections to the namespace only on the server's published ports;
//     others are refused (ICMP port unreachable: "connection refused").
//
// Each DNAT rule has a counter (nft list table inet NAME shows it).
func InstallHostRules(r HostRules) (*HostTable, error) {
	conn, table, err := ownedTable(r.Veth.Name)
	if err != nil {
		return nil, err
	}
	if err := addHostRules(conn, table, r); err != nil {
		conn.CloseLasting()
		return nil, fmt.Errorf("adding the rules of nftables table inet %s: %w", table.Name, err)
	}
	return &HostTable{Name: table.Name, conn: conn}, nil
}

// vethFamily is what the rules need to know of one address family.
type vethFamily struct {
	nfproto   byte
	natFamily uint32
	inside    netip.Addr
	subnet    netip.Prefix
	// all: every interface forwards; fwd: those that do otherwise (the
	// name of their set).
	all    bool
	ifaces []string
	set    string
	// on: the kernel path is usable for the family (the host side of the
	// pair can forward the replies).
	on bool
	// daddrOff and addrLen locate the destination address in the
	// network header; saddrOff the source address.
	daddrOff, saddrOff, addrLen uint32
}

func addHostRules(conn *nftables.Conn, table *nftables.Table, r HostRules) error {
	fams := []*vethFamily{
		{nfproto: unix.NFPROTO_IPV4, natFamily: unix.NFPROTO_IPV4, inside: r.Veth.Inside4.Addr(), subnet: r.Veth.Subnet4(),
			all: r.Fwd.All4, ifaces: r.Fwd.Ifaces4, set: "forwarding4", on: true, daddrOff: 16, saddrOff: 12, addrLen: 4},
		{nfproto: unix.NFPROTO_IPV6, natFamily: unix.NFPROTO_IPV6, inside: r.Veth.Inside6.Addr(), subnet: r.Veth.Subnet6(),
			all: r.Fwd.All6, ifaces: r.Fwd.Ifaces6, set: "forwarding6", on: r.Veth.Inside6.IsValid() && r.Veth.Forward6, daddrOff: 24, saddrOff: 8, addrLen: 16},
	}
	sets := map[string]*nftables.Set{}
	for _, f := range fams {
		if !f.on || f.all || len(f.ifaces) == 0 {
			continue
		}
		s := &nftables.Set{Table: table, Name: f.set, KeyType: nftables.TypeIFName}
		var elems []nftables.SetElement
		for _, name := range f.ifaces {
			elems = append(elems, nftables.SetElement{Key: nftIfname(name)})
		}
		if err := conn.AddSet(s, elems); err != nil {
			return err
		}
		sets[f.set] = s
	}
	// ingress matches packets that arrived on an interface that forwards
	// the family, other than the run's own (a connection from inside to a
	// host address is for the host socket: DNAT would send it straight
	// back inside, where the reply would bypass the reverse translation).
	// It returns nil when no interface does.
	ingress := func(f *vethFamily, key expr.MetaKey) []expr.Any {
		e := []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: nftIfname(r.Veth.Name)},
		}
		if f.all {
			return e
		}
		s := sets[f.set]
		if s == nil {
			return nil
		}
		return append(e, &expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID})
	}

	pre := conn.AddChain(&nftables.Chain{
		Name: "prerouting", Table: table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	for _, p := range r.Ports {
		host := p.Host.Addr().Unmap()
		if host.IsLoopback() {
			continue
		}
		proto := byte(unix.IPPROTO_TCP)
		if p.Proto == "udp" {
			proto = unix.IPPROTO_UDP
		}
		for _, f := range fams {
			if !f.on || !servesFamily(host, f.nfproto) {
				continue
			}
			in := ingress(f, expr.MetaKeyIIFNAME)
			if in == nil {
				continue
			}
			e := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
			}
			e = append(e, in...)
			e = append(e,
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Host.Port())},
			)
			if host.IsUnspecified() {
				// Any address of this host (not one it routes for others).
				e = append(e,
					&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
				)
			} else {
				e = append(e,
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOff, Len: f.addrLen},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: host.AsSlice()},
				)
			}
			e = append(e,
				&expr.Counter{},
				&expr.Immediate{Register: 1, Data: f.inside.AsSlice()},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.Inside)},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.natFamily, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			)
			conn.AddRule(&nftables.Rule{Table: table, Chain: pre, Exprs: e})
		}
	}

	fwd := conn.AddChain(&nftables.Chain{
		Name: "forward", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
	})
	input := conn.AddChain(&nftables.Chain{
		Name: "input", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter,
	})
	output := conn.AddChain(&nftables.Chain{
		Name: "output", Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter,
	})
	fromVeth := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftIfname(r.Veth.Name)},
	}
	toVeth := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nftIfname(r.Veth.Name)},
	}
	// IPv6 neighbour solicitations and advertisements from the namespace
	// (conntrack does not track them): without them the namespace cannot
	// find the host side's link address and its IPv6 replies never leave.
	// Router advertisements and redirects are not among them: a server
	// with CAP_NET_ADMIN inside could otherwise give the host routes. ARP
	// is not seen by inet tables.
	conn.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: cat(fromVeth,
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{135}, ToData: []byte{136}},
			&expr.Verdict{Kind: expr.VerdictAccept},
		})})
	for _, f := range fams {
		inside := f.inside
		if !inside.IsValid() {
			continue
		}
		family := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		}
		// A reply: the packet goes the reply way of its connection, which
		// was opened towards the namespace's address (the reply source is
		// that address). An ICMP error the namespace sends about another
		// connection of the host's is related to that one, whose reply
		// source is elsewhere: dropped.
		reply := cat(fromVeth, family, []expr.Any{
			&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{ctDirReply}},
			&expr.Ct{Key: expr.CtKeySRC, Register: 1, Direction: ctDirection(ctDirReply)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: inside.AsSlice()},
			&expr.Verdict{Kind: expr.VerdictAccept},
		})
		conn.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: reply})
		if f.on {
			conn.AddRule(&nftables.Rule{Table: table, Chain: fwd, Exprs: reply})
		}
	}
	// Everything else from the namespace: dropped, every family and
	// protocol.
	drop := cat(fromVeth, []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})
	conn.AddRule(&nftables.Rule{Table: table, Chain: input, Exprs: drop})
	conn.AddRule(&nftables.Rule{Table: table, Chain: fwd, Exprs: drop})

	for _, f := range fams {
		if !f.on {
			continue
		}
		family := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		}
		// Into the namespace, only what prerouting sent there may start.
		e := cat(family, toVeth, ctStateNew(), []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(ctStatusDstNAT), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		})
		conn.AddRule(&nftables.Rule{Table: table, Chain: fwd, Exprs: e})
	}

	// The host's own connections to the namespace: published ports only.
	published, err := publishedSets(conn, table, r.Ports)
	if err != nil {
		return err
	}
	for _, s := range published {
		conn.AddRule(&nftables.Rule{Table: table, Chain: output, Exprs: cat(toVeth, ctStateNew(), []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{s.proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, SetName: s.set.Name, SetID: s.set.ID},
			&expr.Verdict{Kind: expr.VerdictAccept},
		})})
	}
	conn.AddRule(&nftables.Rule{Table: table, Chain: output, Exprs: cat(toVeth, ctStateNew(), []expr.Any{
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH},
	})})
	return conn.Flush()
}

// publishedSet is a set of the ports published inside for one protocol.
type publishedSet struct {
	proto byte
	set   *nftables.Set
}

// publishedSets adds to table a set of the inside ports published for each
// of TCP and UDP.
func publishedSets(conn *nftables.Conn, table *nftables.Table, ports []PublishedPort) ([]publishedSet, error) {
	var out []publishedSet
	for _, proto := range []struct {
		name string
		num  byte
	}{{"tcp", unix.IPPROTO_TCP}, {"udp", unix.IPPROTO_UDP}} {
		seen := map[uint16]bool{}
		var elems []nftables.SetElement
		for _, p := range ports {
			if p.Proto == proto.name && !seen[p.Inside] {
				seen[p.Inside] = true
				elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p.Inside)})
			}
		}
		s := &nftables.Set{Table: table, Name: "published_" + proto.name, KeyType: nftables.TypeInetService}
		if err := conn.AddSet(s, elems); err != nil {
			return nil, err
		}
		out = append(out, publishedSet{proto.num, s})
	}
	return out, nil
}

// ctDirection is a conntrack direction as the ct expression of
// google/nftables v0.3.0 must be given it: the library sends the field as
// four big-endian bytes, and the kernel reads NFTA_CT_DIRECTION as one (the
// first), so the direction goes in the top byte. Without this, every "ct
// reply ..." would silently load the original direction.
func ctDirection(dir uint8) uint32 { return uint32(dir) << 24 }

// servesFamily reports whether a host socket bound to host takes clients
// of the family: its own, and both for [::] (dual-stack).
func servesFamily(host netip.Addr, nfproto byte) bool {
	if host.Is4() {
		return nfproto == unix.NFPROTO_IPV4
	}
	return host.IsUnspecified() || nfproto == unix.NFPROTO_IPV6
}

// ctStateNew matches the first packet of a connection.
func ctStateNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// nftIfname is an interface name as nftables compares it: IFNAMSIZ bytes,
// NUL-padded.
func nftIfname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}
