package nsutil

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// unprivilegedPortStart is the sysctl that decides which ports need
// CAP_NET_BIND_SERVICE. Each network namespace has its own copy, and the
// helper (with CAP_NET_ADMIN in the namespace's user namespace) may write
// it: with 0 there, a server with no capabilities at all binds port 80
// (fact 2 of DESIGN.md). Without it the server gets EACCES on bind.
const unprivilegedPortStart = "/proc/sys/net/ipv4/ip_unprivileged_port_start"

// SetupLoopback brings lo up in the caller's network namespace and lets
// every port be bound without privilege there. It needs CAP_NET_ADMIN in
// the namespace.
func SetupLoopback() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return &NamespaceError{Step: StepLoopback, Err: fmt.Errorf("finding lo: %w", err)}
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return &NamespaceError{Step: StepLoopback, Err: err}
	}
	if err := os.WriteFile(unprivilegedPortStart, []byte("0\n"), 0); err != nil {
		return &NamespaceError{Step: StepPortSysctl, Err: err}
	}
	return nil
}

// tcpCongestion is the namespace's default TCP congestion control.
const tcpCongestion = "/proc/sys/net/ipv4/tcp_congestion_control"

// UseLoopbackCongestionControl makes reno the default congestion control
// of the caller's network namespace, for a namespace whose only link is
// lo. A host's default is often bbr, which paces every connection with
// timers; on loopback, where nothing is ever lost or queued, that is work
// for nothing, and the relay's leg inside and the server's end of it are
// both on loopback. Each namespace has its own default (a server may still
// choose another for its sockets), and reno is always available.
func UseLoopbackCongestionControl() error {
	return os.WriteFile(tcpCongestion, []byte("reno\n"), 0)
}

// MountProc gives the caller's mount namespace a /proc of its own PID
// namespace, so the server sees only the processes of the run. It needs
// CAP_SYS_ADMIN in the user namespace that owns the mount namespace, and
// the kernel refuses it where the host's /proc is partly masked (as in many
// containers); the caller then keeps the host's /proc.
func MountProc() error {
	// Keep the new mount from propagating back to the host's namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	return nil
}
