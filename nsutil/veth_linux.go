package nsutil

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// This file is the veth data path (--net=veth), for a nsbind that holds
// CAP_NET_ADMIN in the host's network namespace: a veth pair joins the
// host and the run's namespace, the host side forwards what it receives,
// and the rules of hostrules_linux.go bring published ports in through the
// kernel. Everything it creates on the host belongs to the run: the veth
// pair goes when the run's network namespace goes (the kernel destroys a
// namespace's interfaces with it, and a veth takes its peer along), even
// when nsbind is killed; nsbind also deletes it itself at a normal end.
//
// Nothing global is changed: no ip_forward, no route_localnet. IPv4
// forwarding is decided by the interface a packet arrives on
// (net.ipv4.conf.IFACE.forwarding), so the host side of the pair may
// forward the server's replies while every other interface keeps its
// setting; IPv6 has the per-interface net.ipv6.conf.IFACE.force_forwarding
// since Linux 6.17 (before that only the global switch exists).

// VethInside is the name of the namespace's end of the pair.
const VethInside = "eth0"

// Default subnets: the IPv4 /30 blocks of defaultPool4 and the /64s of
// defaultPool6 (a ULA prefix), tried in order until one is free on the host.
var (
	defaultPool4 = netip.MustParsePrefix("10.213.0.0/16")
	defaultPool6 = netip.MustParsePrefix("fd6e:7362:6e64::/48")
)

const (
	defaultBits4 = 30
	defaultBits6 = 64
)

// ErrNoNetAdmin is returned when the process lacks CAP_NET_ADMIN, which a
// veth pair and rules in the host's network namespace need.
var ErrNoNetAdmin = errors.New("no CAP_NET_ADMIN in the host's network namespace")

// CheckHostNetAdmin reports ErrNoNetAdmin when the calling process does not
// hold CAP_NET_ADMIN in its effective set. nsbind runs in the host's
// network namespace, owned by its own user namespace, so that is the
// capability that lets it create interfaces and nftables tables there.
func CheckHostNetAdmin() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("reading nsbind's capabilities: %w", err)
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return ErrNoNetAdmin
	}
	return nil
}

// Veth is a run's veth pair as seen from the host.
type Veth struct {
	// Name is the host side's name; the namespace's side is VethInside.
	Name string
	// Host4 and Inside4 are the IPv4 addresses of the two ends with the
	// subnet's prefix length; Host6 and Inside6 the IPv6 ones, invalid
	// when the run has no IPv6 on the veth.
	Host4, Inside4 netip.Prefix
	Host6, Inside6 netip.Prefix
	// Forward6 is true when the host side can forward IPv6 (the server's
	// IPv6 replies can be routed out); without it the pair has no IPv6.
	Forward6 bool
}

// Subnet4 is the IPv4 subnet of the pair.
func (v *Veth) Subnet4() netip.Prefix { return v.Host4.Masked() }

// Subnet6 is the IPv6 subnet of the pair (invalid without IPv6).
func (v *Veth) Subnet6() netip.Prefix { return v.Host6.Masked() }

// SubnetLock serialises the choice of subnets between concurrent runs on
// one host, from the choice until the chosen subnet is on an interface
// (and so visible to the next run as a route). It is an flock(2) on
// SubnetLockFile, in a directory only root may write: only a process that
// could make veth pairs itself can take it, so no other user can block the
// runs that can (an abstract unix socket, which any user may bind first,
// could). The kernel releases the lock when the process exits, whatever the
// cause; the file stays, empty.
type SubnetLock struct{ f *os.File }

// SubnetLockFile is the subnet lock's file.
const SubnetLockFile = "/run/nsbind/veth-subnets.lock"

// LockSubnets takes the subnet lock, waiting at most d for another run to
// release it.
func LockSubnets(d time.Duration) (*SubnetLock, error) {
	return lockSubnetsAt(SubnetLockFile, 0, d)
}

// lockSubnetsAt takes the lock of file, whose directory and file must
// belong to uid owner.
func lockSubnetsAt(file string, owner int, d time.Duration) (*SubnetLock, error) {
	f, err := openLockFile(file, owner)
	if err != nil {
		return nil, fmt.Errorf("taking the subnet lock %s: %w", file, err)
	}
	deadline := time.Now().Add(d)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &SubnetLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("taking the subnet lock %s: %w", file, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("taking the subnet lock %s: another nsbind run held it for %v", file, d)
		}
		// Another run is between its choice and its address: a few
		// milliseconds.
		time.Sleep(5 * time.Millisecond)
	}
}

// openLockFile opens (creating them if need be) the lock file and its
// directory, and refuses either when it is not owner's, a symbolic link,
// or writable by others: whoever could replace the file or open it could
// hold the lock. The file is kept 0600, since flock needs only a
// descriptor, read-only ones included.
func openLockFile(file string, owner int) (*os.File, error) {
	dir := filepath.Dir(file)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if err := checkLockPath(dir, owner, true); err != nil {
		return nil, err
	}
	fd, err := unix.Open(file, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: file, Err: err}
	}
	f := os.NewFile(uintptr(fd), file)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return nil, err
	}
	if err := lockOwnerOK(file, st, owner, false); err != nil {
		f.Close()
		return nil, err
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Fchmod(fd, 0o600); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// checkLockPath checks the lock's directory (dir true) without following
// a symbolic link.
func checkLockPath(path string, owner int, dir bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: path, Err: err}
	}
	return lockOwnerOK(path, st, owner, dir)
}

func lockOwnerOK(path string, st unix.Stat_t, owner int, dir bool) error {
	typ := uint32(unix.S_IFREG)
	what := "a regular file"
	if dir {
		typ, what = unix.S_IFDIR, "a directory"
	}
	switch {
	case st.Mode&unix.S_IFMT != typ:
		return fmt.Errorf("%s is not %s (a symbolic link?): refusing it", path, what)
	case int(st.Uid) != owner:
		return fmt.Errorf("%s belongs to uid %d, not %d: refusing it", path, st.Uid, owner)
	case dir && st.Mode&0o022 != 0:
		return fmt.Errorf("%s is writable by others (mode %#o): refusing it", path, st.Mode&0o777)
	}
	return nil
}

// Unlock releases the lock; it may be called more than once.
func (l *SubnetLock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// SubnetInUseError is a subnet asked for with --subnet that a route or an
// address of the host already covers.
type SubnetInUseError struct {
	Subnet netip.Prefix
	// By is the host's prefix that overlaps it, Dev its interface.
	By  netip.Prefix
	Dev string
}

func (e *SubnetInUseError) Error() string {
	on := ""
	if e.Dev != "" {
		on = " on " + e.Dev
	}
	return fmt.Sprintf("subnet %s overlaps %s%s", e.Subnet, e.By, on)
}

// usedPrefix is a prefix the host already routes or has an address in.
type usedPrefix struct {
	p   netip.Prefix
	dev string
}

// broadestRoute is, per address length, the shortest route prefix that
// counts as used: broader routes are default routes in all but name (a
// VPN's 0.0.0.0/1 and 128.0.0.0/1, a catch-all fd00::/8), and the veth's
// connected route, more specific, takes precedence over them for its own
// few addresses only.
var broadestRoute = map[int]int{32: 8, 128: 16}

// routeCounts reports whether a host route to p rules out subnets in it.
func routeCounts(p netip.Prefix) bool { return p.Bits() >= broadestRoute[p.Addr().BitLen()] }

// hostPrefixes lists the host's routes (every table) and addresses of one
// family, without default routes and routes as broad.
func hostPrefixes(family int) ([]usedPrefix, error) {
	names := map[int]string{}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing the host's interfaces: %w", err)
	}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var out []usedPrefix
	routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing the host's routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if p, ok := ipNetPrefix(r.Dst); ok && routeCounts(p) {
			out = append(out, usedPrefix{p, names[r.LinkIndex]})
		}
	}
	addrs, err := netlink.AddrList(nil, family)
	if err != nil {
		return nil, fmt.Errorf("listing the host's addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := ipNetPrefix(a.IPNet); ok {
			out = append(out, usedPrefix{p, names[a.LinkIndex]})
		}
	}
	return out, nil
}

func ipNetPrefix(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// firstOverlap returns the first used prefix that overlaps p.
func firstOverlap(p netip.Prefix, used []usedPrefix) (usedPrefix, bool) {
	for _, u := range used {
		if u.p.Overlaps(p) {
			return u, true
		}
	}
	return usedPrefix{}, false
}

// pickSubnet returns want if it is free, or the first free block of bits
// in pool. A want that is taken is a *SubnetInUseError.
func pickSubnet(want, pool netip.Prefix, bits int, used []usedPrefix) (netip.Prefix, error) {
	if want.IsValid() {
		if u, ok := firstOverlap(want, used); ok {
			return netip.Prefix{}, &SubnetInUseError{Subnet: want, By: u.p, Dev: u.dev}
		}
		return want, nil
	}
	n := 1 << min(bits-pool.Bits(), 16)
	for i := range n {
		p, ok := nthSubnet(pool, bits, i)
		if !ok {
			break
		}
		if _, taken := firstOverlap(p, used); !taken {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /%d left in %s: give one with --subnet", bits, pool)
}

// nthSubnet is the i-th block of the given size in pool.
func nthSubnet(pool netip.Prefix, bits, i int) (netip.Prefix, bool) {
	if i < 0 || bits-pool.Bits() < 63 && uint64(i) >= 1<<(bits-pool.Bits()) {
		return netip.Prefix{}, false
	}
	b := pool.Masked().Addr().As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	shift := 128 - bits
	if pool.Addr().Is4() {
		shift = 32 - bits
	}
	v := uint64(i)
	if shift >= 64 {
		hi |= v << (shift - 64)
	} else {
		lo |= v << shift
		hi |= v >> (64 - shift) // Go: a shift by 64 gives 0
	}
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	a := netip.AddrFrom16(b)
	if pool.Addr().Is4() {
		a = a.Unmap()
	}
	return netip.PrefixFrom(a, bits), true
}

// ends returns the host side's (first) and the inside's (second) address
// of subnet p, with its prefix length.
func ends(p netip.Prefix) (host, inside netip.Prefix) {
	h := p.Masked().Addr().Next()
	return netip.PrefixFrom(h, p.Bits()), netip.PrefixFrom(h.Next(), p.Bits())
}

// ChooseSubnets returns the addresses of a new run's veth pair: want4 and
// want6 (from --subnet) when given and free, otherwise the first free
// block of the default pools. IPv6 is left out (zero prefixes) when the
// host has it disabled. Call it with the subnet lock held, and keep it
// until CreateVeth has put the addresses on the host side.
func ChooseSubnets(want4, want6 netip.Prefix) (Veth, error) {
	var v Veth
	used, err := hostPrefixes(netlink.FAMILY_V4)
	if err != nil {
		return v, err
	}
	p4, err := pickSubnet(want4, defaultPool4, defaultBits4, used)
	if err != nil {
		return v, err
	}
	v.Host4, v.Inside4 = ends(p4)
	if !hostHasIPv6() {
		if want6.IsValid() {
			return v, errors.New("IPv6 is disabled on this host (net.ipv6.conf.default.disable_ipv6=1 or no IPv6 in the kernel): leave out the IPv6 --subnet")
		}
		return v, nil
	}
	// Without forwarding on the host side the server's IPv6 replies could
	// not leave it: then the veth has no IPv6 and IPv6 clients are relayed.
	v.Forward6 = globalForwarding6() || readSysctl("ipv6/conf/default/force_forwarding") != ""
	if !v.Forward6 {
		if want6.IsValid() {
			return v, errors.New("an IPv6 --subnet needs IPv6 forwarding on the veth, and this kernel has neither net.ipv6.conf.IFACE.force_forwarding (Linux 6.17) nor net.ipv6.conf.all.forwarding=1: leave out the IPv6 --subnet")
		}
		return v, nil
	}
	used, err = hostPrefixes(netlink.FAMILY_V6)
	if err != nil {
		return v, err
	}
	p6, err := pickSubnet(want6, defaultPool6, defaultBits6, used)
	if err != nil {
		if !want6.IsValid() {
			// No free default /64: the run goes on without IPv6 on the
			// veth (IPv6 clients are relayed) rather than failing.
			v.Forward6 = false
			return v, nil
		}
		return v, err
	}
	v.Host6, v.Inside6 = ends(p6)
	return v, nil
}

// hostHasIPv6 reports whether new interfaces of the host get IPv6.
func hostHasIPv6() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/default/disable_ipv6")
	return err == nil && strings.TrimSpace(string(b)) == "0"
}

// vethName is the host side's name for the run of nsbind process pid:
// "nsb" and the pid (the pid is unique among the runs of one host at a
// time, and names the run for ps), or with random hex where that name is
// taken (a same-pid nsbind of another PID namespace on the same network,
// or a dying namespace's pair not yet gone). It fits IFNAMSIZ (15
// characters).
func vethName(pid, attempt int) string {
	if attempt == 0 {
		return "nsb" + strconv.Itoa(pid)
	}
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("nsb%08x", binary.BigEndian.Uint32(b[:]))
}

// CreateVeth creates v's veth pair: the host side, named here (v.Name is
// set), with v.Host4 and v.Host6, forwarding what it receives; and
// VethInside in the network namespace of process pid, left down and
// unconfigured for the helper (SetupVethInside). On error nothing stays.
func CreateVeth(pid int, v *Veth) error {
	var err error
	for attempt := range 4 {
		v.Name = vethName(os.Getpid(), attempt)
		err = netlink.LinkAdd(&netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: v.Name},
			PeerName:      VethInside,
			PeerNamespace: netlink.NsPid(pid),
		})
		if !errors.Is(err, syscall.EEXIST) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("creating the veth pair: %w", err)
	}
	if err := configureHostSide(v); err != nil {
		DeleteVeth(v.Name)
		return err
	}
	return nil
}

func configureHostSide(v *Veth) error {
	link, err := netlink.LinkByName(v.Name)
	if err != nil {
		return fmt.Errorf("finding the veth %s: %w", v.Name, err)
	}
	// The server's replies to clients the kernel brought in arrive here:
	// this interface, and only this one, forwards them.
	if err := writeSysctl("ipv4/conf/"+v.Name+"/forwarding", "1"); err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixIPNet(v.Host4)}); err != nil {
		return fmt.Errorf("adding %s to %s: %w", v.Host4, v.Name, err)
	}
	if v.Host6.IsValid() {
		if !globalForwarding6() {
			if err := writeSysctl("ipv6/conf/"+v.Name+"/force_forwarding", "1"); err != nil {
				return err
			}
		}
		// No duplicate address detection: the subnet is the run's own,
		// and a tentative address could not be used for a second or so.
		err := netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixIPNet(v.Host6), Flags: unix.IFA_F_NODAD})
		if err != nil {
			return fmt.Errorf("adding %s to %s: %w", v.Host6, v.Name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up: %w", v.Name, err)
	}
	return nil
}

// DeleteVeth deletes the host side of a veth pair (and so the pair); one
// already gone is no error.
func DeleteVeth(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, syscall.ENODEV) {
			return nil
		}
		return fmt.Errorf("finding the veth %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("deleting the veth %s: %w", name, err)
	}
	return nil
}

// SetupVethInside configures the namespace's end of the pair, from inside:
// the rules that let only the published sockets' ports in and nothing a
// program starts out (guardVeth), its addresses, up, and default routes
// through the host side. It runs in the helper, which holds CAP_NET_ADMIN
// in the namespace. gateway6 and inside6 may be invalid (no IPv6 on the
// veth).
func SetupVethInside(inside4 netip.Prefix, gateway4 netip.Addr, inside6 netip.Prefix, gateway6 netip.Addr, published []SocketConfig) error {
	link, err := netlink.LinkByName(VethInside)
	if err != nil {
		return fmt.Errorf("finding %s inside: %w", VethInside, err)
	}
	var tcp, udp []uint16
	seen := map[SocketConfig]bool{}
	for _, s := range published {
		k := SocketConfig{Proto: s.Proto, Inside: s.Inside}
		if seen[k] {
			continue
		}
		seen[k] = true
		if s.Proto == "udp" {
			udp = append(udp, s.Inside)
		} else {
			tcp = append(tcp, s.Inside)
		}
	}
	if err := guardVeth(tcp, udp); err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixIPNet(inside4)}); err != nil {
		return fmt.Errorf("adding %s to %s inside: %w", inside4, VethInside, err)
	}
	if inside6.IsValid() {
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixIPNet(inside6), Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("adding %s to %s inside: %w", inside6, VethInside, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bringing %s up inside: %w", VethInside, err)
	}
	// The default routes carry the server's replies to clients the kernel
	// brought in from other machines, whatever their address.
	routes := []struct {
		gw  netip.Addr
		all string
	}{{gateway4, "0.0.0.0/0"}, {gateway6, "::/0"}}
	for _, r := range routes {
		if !r.gw.IsValid() {
			continue
		}
		_, dst, _ := net.ParseCIDR(r.all)
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: dst, Gw: r.gw.AsSlice()}); err != nil {
			return fmt.Errorf("adding the default route via %s inside: %w", r.gw, err)
		}
	}
	return nil
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile("/proc/sys/net/"+path, []byte(value), 0); err != nil {
		return fmt.Errorf("setting net.%s=%s: %w", strings.ReplaceAll(path, "/", "."), value, err)
	}
	return nil
}

func readSysctl(path string) string {
	b, err := os.ReadFile("/proc/sys/net/" + path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func globalForwarding6() bool { return readSysctl("ipv6/conf/all/forwarding") == "1" }

// Forwarding is which host interfaces forward the packets they receive,
// per family: only packets arriving on those can be routed into the run's
// namespace, and only replies arriving on those can be routed back to it.
type Forwarding struct {
	// All4 and All6: every interface forwards (net.ipv4.ip_forward=1,
	// net.ipv6.conf.all.forwarding=1).
	All4, All6 bool
	// Ifaces4 and Ifaces6 forward although not every interface does
	// (net.ipv4.conf.IFACE.forwarding=1,
	// net.ipv6.conf.IFACE.force_forwarding=1).
	Ifaces4, Ifaces6 []string
	// Blocked4 and Blocked6 are the interfaces that are up, have an
	// address of the family other than loopback and link-local, and do
	// not forward: clients arriving there are relayed instead.
	Blocked4, Blocked6 []string
	// PerIface6 is true when the kernel has per-interface IPv6
	// forwarding (force_forwarding, Linux 6.17).
	PerIface6 bool
}

// HostForwarding reads which interfaces forward, leaving out the host side
// of the run's own pair (own). It is a snapshot: an interface that starts
// forwarding later is not seen.
func HostForwarding(own string) (Forwarding, error) {
	f := Forwarding{
		All4:      readSysctl("ipv4/conf/all/forwarding") == "1",
		All6:      globalForwarding6(),
		PerIface6: readSysctl("ipv6/conf/default/force_forwarding") != "",
	}
	links, err := netlink.LinkList()
	if err != nil {
		return f, fmt.Errorf("listing the host's interfaces: %w", err)
	}
	for _, l := range links {
		name := l.Attrs().Name
		if name == own || l.Attrs().Flags&net.FlagLoopback != 0 {
			continue
		}
		fwd4 := f.All4 || readSysctl("ipv4/conf/"+name+"/forwarding") == "1"
		fwd6 := f.All6 || readSysctl("ipv6/conf/"+name+"/force_forwarding") == "1"
		if fwd4 && !f.All4 {
			f.Ifaces4 = append(f.Ifaces4, name)
		}
		if fwd6 && !f.All6 {
			f.Ifaces6 = append(f.Ifaces6, name)
		}
		if l.Attrs().Flags&net.FlagUp == 0 || (fwd4 && fwd6) {
			continue
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		var has4, has6 bool
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			if ip.Unmap().Is4() {
				has4 = true
			} else {
				has6 = true
			}
		}
		if has4 && !fwd4 {
			f.Blocked4 = append(f.Blocked4, name)
		}
		if has6 && !fwd6 {
			f.Blocked6 = append(f.Blocked6, name)
		}
	}
	return f, nil
}

// ProbeVeth reports whether --net=veth can work here, for nsbind doctor:
// CAP_NET_ADMIN in the host's network namespace, the veth driver, and
// nftables with NAT and owned tables (Linux 5.12). It changes nothing on
// the host: the veth probe asks the kernel for a pair it must refuse, and
// the probe table belongs to a netlink socket that is closed at once.
func ProbeVeth() error {
	if err := CheckHostNetAdmin(); err != nil {
		return err
	}
	// A peer name with a '/' is invalid: a kernel with the veth driver
	// fails the request with EINVAL when it registers the peer, before
	// either end exists; one without it says EOPNOTSUPP.
	name := fmt.Sprintf("nsbp%d", os.Getpid())
	err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "nsbind/probe"})
	switch {
	case errors.Is(err, syscall.EINVAL):
	case err == nil: // a kernel that took the name after all
		DeleteVeth(name)
	case errors.Is(err, syscall.EOPNOTSUPP):
		return fmt.Errorf("the kernel has no veth driver (CONFIG_VETH): %w", err)
	default:
		return fmt.Errorf("creating a veth pair: %w", err)
	}
	return probeOwnedTable()
}
