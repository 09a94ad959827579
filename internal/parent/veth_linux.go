package parent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/nsbind/nsbind/nsutil"
)

// --net=veth, the host's part: the veth pair with its end in the helper's
// namespace, and the run's nftables table for the published sockets. The
// helper configures its end (internal/helper, main_linux.go).

// subnetLockWait bounds how long a run waits for another one to choose its
// subnet.
const subnetLockWait = 10 * time.Second

// vethRun is the host's part of a --net=veth run: the subnet lock until
// the veth has its addresses, the veth pair, and the run's nftables table.
type vethRun struct {
	lock    *nsutil.SubnetLock
	veth    nsutil.Veth
	created bool
	table   *nsutil.HostTable
}

// prepareVeth chooses the run's subnets before the helper starts, so its
// configuration can carry them, holding the subnet lock until attachVeth
// has put them on the host.
func (r *run) prepareVeth() error {
	lock, err := nsutil.LockSubnets(subnetLockWait)
	if err != nil {
		return err
	}
	v, err := nsutil.ChooseSubnets(r.Subnet4, r.Subnet6)
	if err != nil {
		lock.Unlock()
		var inUse *nsutil.SubnetInUseError
		if errors.As(err, &inUse) {
			return fmt.Errorf("--subnet %s: %w: choose a subnet that no route or address of this host uses (see ip route, ip -6 route)", inUse.Subnet, err)
		}
		return fmt.Errorf("choosing the veth's subnet: %w", err)
	}
	cfg := &nsutil.VethConfig{Inside4: v.Inside4, Gateway4: v.Host4.Addr()}
	if v.Inside6.IsValid() {
		cfg.Inside6, cfg.Gateway6 = v.Inside6, v.Host6.Addr()
	}
	r.cfg.Veth = cfg
	r.veth = &vethRun{lock: lock, veth: v}
	return nil
}

// attachVeth makes the pair and the host's rules, then lets the helper go
// on.
func (r *run) attachVeth() error {
	return r.veth.attach(r.h, r.cfg.Sockets, r.Quiet, r.Logger, r.Stderr)
}

// attach makes the veth pair with its end in the helper's namespace, the
// host's rules for the published sockets, and then lets the helper go on.
// Before the helper has its message it has sent nothing and reads nothing
// else, so signals wait in the parent until then.
func (v *vethRun) attach(h *nsutil.Helper, socks []nsutil.SocketConfig, quiet bool, logger *slog.Logger, stderr io.Writer) error {
	defer v.lock.Unlock()
	if err := nsutil.CreateVeth(h.Pid, &v.veth); err != nil {
		return err
	}
	v.created = true
	v.lock.Unlock()
	fwd, err := nsutil.HostForwarding(v.veth.Name)
	if err != nil {
		return err
	}
	rules := nsutil.HostRules{Veth: v.veth, Fwd: fwd}
	for _, s := range socks {
		rules.Ports = append(rules.Ports, nsutil.PublishedPort{Proto: s.Proto, Host: s.Host, Inside: s.Inside})
	}
	v.table, err = nsutil.InstallHostRules(rules)
	if err != nil {
		return err
	}
	logger.Debug("veth ready", "host", v.veth.Name, "forwarding4", fwd.Ifaces4, "all4", fwd.All4,
		"forwarding6", fwd.Ifaces6, "all6", fwd.All6, "ipv6", v.veth.Inside6.IsValid())
	if !quiet {
		fmt.Fprintf(stderr, "nsbind: %s\n", describeVeth(v.veth))
		if line := forwardingNote(fwd, v.veth.Inside6.IsValid()); line != "" {
			fmt.Fprintf(stderr, "nsbind: %s\n", line)
		}
	}
	if err := h.Ctrl.Send(nsutil.VethReady{}); err != nil {
		// The helper is gone; the main loop reports why.
		logger.Debug("telling the helper the veth is ready", "err", err)
	}
	return nil
}

// close removes what the run made on the host: the table (by closing the
// netlink socket that owns it) and the veth pair. The kernel does both by
// itself when nsbind is killed; doing it here makes a normal end leave
// nothing behind at once, without waiting for the namespace's teardown.
func (v *vethRun) close(logger *slog.Logger) {
	if v.table != nil {
		v.table.Close()
	}
	if v.created {
		if err := nsutil.DeleteVeth(v.veth.Name); err != nil {
			logger.Warn(err.Error())
		}
	}
	v.lock.Unlock()
}

// describeVeth is the line nsbind prints about the pair.
func describeVeth(v nsutil.Veth) string {
	host, inside := v.Host4.String(), v.Inside4.String()
	if v.Inside6.IsValid() {
		host += ", " + v.Host6.String()
		inside += ", " + v.Inside6.String()
	}
	return fmt.Sprintf("veth %s (%s) ⇄ %s inside (%s)", v.Name, host, nsutil.VethInside, inside)
}

// forwardingNote is one line about the host interfaces that do not forward,
// or "" when every interface with an address does: clients that arrive
// there reach the relay instead of the kernel path. nsbind never changes
// that setting.
func forwardingNote(f nsutil.Forwarding, ipv6 bool) string {
	var sysctls []string
	seen := map[string]bool{}
	var names []string
	add := func(name, sysctl string) {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		sysctls = append(sysctls, sysctl)
	}
	for _, n := range f.Blocked4 {
		add(n, "net.ipv4.conf."+n+".forwarding=0")
	}
	if ipv6 {
		for _, n := range f.Blocked6 {
			add(n, "net.ipv6.conf."+n+".force_forwarding=0")
		}
	}
	if len(names) == 0 {
		return ""
	}
	verb := "does"
	if len(names) > 1 {
		verb = "do"
	}
	return fmt.Sprintf("%s %s not forward (%s; nsbind leaves host settings alone): clients arriving there are relayed, not routed through the veth; loopback is always relayed",
		strings.Join(names, ", "), verb, strings.Join(sysctls, ", "))
}
