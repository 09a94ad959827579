package nsutil

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The host settings that decide whether an unprivileged user may create a
// user namespace. Each is read by ReadHostFacts; cmd/nsbind says what to do
// about them.
const (
	// maxUserNamespaces bounds the user namespaces each user may hold
	// (per user namespace, since Linux 4.9). At 0 nobody may create one,
	// root included: clone(2) fails with ENOSPC.
	maxUserNamespaces = "/proc/sys/user/max_user_namespaces"
	// unprivilegedUsernsClone exists only in kernels patched by Debian
	// (before 6.x) and a few others. At 0 only a process with CAP_SYS_ADMIN
	// in the initial user namespace may create one: EPERM for the rest.
	unprivilegedUsernsClone = "/proc/sys/kernel/unprivileged_userns_clone"
	// apparmorRestrictUserns exists on Ubuntu 23.10 and later. At 1 an
	// unprivileged program without an AppArmor profile that allows
	// "userns," gets a user namespace without capabilities in it (or none),
	// so the helper cannot set up its network namespace.
	apparmorRestrictUserns = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"
)

// HostFacts is what the host says about namespaces, read from /proc
// without creating anything. A value that does not exist on this kernel
// is -1.
type HostFacts struct {
	// Kernel is the kernel release, as uname -r prints it.
	Kernel string
	// MaxUserNamespaces is user.max_user_namespaces.
	MaxUserNamespaces int
	// UnprivilegedUsernsClone is kernel.unprivileged_userns_clone.
	UnprivilegedUsernsClone int
	// AppArmorRestrictUserns is kernel.apparmor_restrict_unprivileged_userns.
	AppArmorRestrictUserns int
	// Seccomp is the Seccomp field of /proc/self/status: 0 none,
	// 1 strict, 2 a filter (as a container's default profile installs).
	Seccomp int
	// PortStart is the host's net.ipv4.ip_unprivileged_port_start: the
	// lowest host port an unprivileged user may publish.
	PortStart int
	// Privileged is true for a process with CAP_SYS_ADMIN in the initial
	// user namespace (root on the host), to which neither
	// unprivileged_userns_clone nor the AppArmor restriction applies.
	Privileged bool
	// Unmapped is true when the caller's uid or gid is not mapped in the
	// user namespace it runs in (it shows as the overflow id, 65534): the
	// kernel lets such a process create no user namespace (EPERM).
	Unmapped bool
}

// ReadHostFacts reads the host facts of the calling process.
func ReadHostFacts() HostFacts {
	f := HostFacts{
		MaxUserNamespaces:       readInt(maxUserNamespaces),
		UnprivilegedUsernsClone: readInt(unprivilegedUsernsClone),
		AppArmorRestrictUserns:  readInt(apparmorRestrictUserns),
		PortStart:               readInt(unprivilegedPortStart),
		Seccomp:                 -1,
	}
	f.Unmapped = os.Getuid() == readInt("/proc/sys/kernel/overflowuid") || os.Getgid() == readInt("/proc/sys/kernel/overflowgid")
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		f.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	status, _ := os.ReadFile("/proc/self/status")
	if v, ok := statusValue(status, "Seccomp"); ok {
		if n, err := strconv.Atoi(v); err == nil {
			f.Seccomp = n
		}
	}
	if v, ok := statusValue(status, "CapEff"); ok {
		if caps, err := strconv.ParseUint(v, 16, 64); err == nil {
			f.Privileged = caps&(1<<unix.CAP_SYS_ADMIN) != 0 && initialUserNamespace()
		}
	}
	return f
}

// KernelAtLeast reports whether the kernel is release major.minor or later;
// false when the release cannot be read.
func (f HostFacts) KernelAtLeast(major, minor int) bool {
	parts := strings.SplitN(f.Kernel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(leadingDigits(parts[1]))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

func leadingDigits(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return s[:i]
}

// initialUserNamespace reports whether the caller is in the initial user
// namespace, whose uid map is the whole range.
func initialUserNamespace() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	f := strings.Fields(string(b))
	return err == nil && len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
}

func readInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

func statusValue(status []byte, field string) (string, bool) {
	for _, line := range strings.Split(string(status), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == field {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// ProbeConfig says how to start the probe: nsbind itself in its probe
// role, which calls ProbeInside.
type ProbeConfig struct {
	Path string
	Args []string
	Env  []string
	// Stderr gets what the probe prints (it should print nothing).
	Stderr *os.File
	Logger *slog.Logger
	// Timeout bounds the probe; 10 seconds when zero.
	Timeout time.Duration
}

// ProbeResult is what creating nsbind's namespaces showed. An error field
// is nil when that step worked; the steps inside are only meaningful when
// Create is nil.
type ProbeResult struct {
	// Create is why the namespaces could not be created (a
	// *NamespaceError), exactly as Start would fail.
	Create error
	// PIDNamespace is true when the probe got PID and mount namespaces
	// too; NoPIDNamespace says why not.
	PIDNamespace   bool
	NoPIDNamespace error
	// Report is why the probe gave no report (it crashed or timed out).
	Report error
	// Setup is SetupLoopback's error inside (a *NamespaceError).
	Setup error
	// ProcMount is MountProc's error inside (only with a PID namespace).
	ProcMount error
	// Transparent is why a socket inside cannot use IP_TRANSPARENT, and
	// PolicyRouting why the rule and route of DESIGN.md fact 5 cannot be
	// added. Both are only tried when Setup worked.
	Transparent   error
	PolicyRouting error
	// SeccompNotify is why a seccomp filter with a user-notification
	// listener cannot be installed after no_new_privs.
	SeccompNotify error
	// Outbound is why the rules of outbound connections cannot be made
	// inside (ProbeOutbound); only tried when Setup worked.
	Outbound error
	// Veth is why --net=veth cannot be used on this host (ProbeVeth, run
	// in the calling process, on the host).
	Veth error
}

// Probe creates nsbind's namespaces with Start, exactly as a run does, and
// has the probe inside (ProbeInside) try what the helper and the server
// will need there.
func Probe(cfg ProbeConfig) ProbeResult {
	var r ProbeResult
	r.Veth = ProbeVeth()
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		r.Create = &NamespaceError{Step: StepCreate, Err: err}
		return r
	}
	defer null.Close()
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = null
	}
	h, err := Start(Config{Path: cfg.Path, Args: cfg.Args, Env: cfg.Env, Stdin: null, Stdout: stderr, Stderr: stderr, Logger: cfg.Logger})
	if err != nil {
		r.Create = err
		return r
	}
	defer h.Ctrl.Close()
	r.PIDNamespace, r.NoPIDNamespace = h.PIDNamespace, h.NoPIDNamespace
	type answer struct {
		rep ProbeReport
		err error
	}
	answered := make(chan answer, 1)
	go func() {
		rep, files, err := Expect[ProbeReport](h.Ctrl)
		closeFiles(files)
		answered <- answer{rep, err}
	}()
	select {
	case a := <-answered:
		switch {
		case errors.Is(a.err, io.EOF):
			r.Report = errors.New("the probe ended without a report")
		case a.err != nil:
			r.Report = a.err
		default:
			rep := a.rep
			r.Setup = rep.Setup.Err()
			r.ProcMount = rep.ProcMount.Err()
			r.Transparent = rep.Transparent.Err()
			r.PolicyRouting = rep.PolicyRouting.Err()
			r.SeccompNotify = rep.SeccompNotify.Err()
			r.Outbound = rep.Outbound.Err()
		}
	case <-time.After(cfg.Timeout):
		r.Report = fmt.Errorf("the probe did not report within %v", cfg.Timeout)
		h.Kill()
	}
	select {
	case <-h.Done():
	case <-time.After(cfg.Timeout):
		h.Kill()
		<-h.Done()
	}
	return r
}

// ProbeInside is the probe role, run by Probe inside fresh namespaces: it
// sets them up as the helper does, tries what the optional features need,
// and sends the report on ctrl.
func ProbeInside(ctrl *Ctrl) error {
	var rep ProbeReport
	// In the helper's order: a fresh /proc first, which brings a fresh
	// /proc/sys that the sysctl is written through.
	if os.Getpid() == 1 {
		rep.ProcMount = NewStepError(MountProc())
	}
	setup := SetupLoopback()
	rep.Setup = NewStepError(setup)
	if setup == nil {
		rep.Transparent = NewStepError(probeTransparent())
		rep.PolicyRouting = NewStepError(probePolicyRouting())
		rep.Outbound = NewStepError(ProbeOutbound())
	}
	// Last: it leaves a filter on one thread of this process.
	rep.SeccompNotify = NewStepError(probeSeccompNotify())
	return ctrl.Send(rep)
}

// probeTransparent checks that a socket inside may use IP_TRANSPARENT (and
// IPV6_TRANSPARENT) to bind an address that is not local, which is how the
// helper dials the server from the client's own address (fact 5). It needs
// CAP_NET_ADMIN in the namespace.
func probeTransparent() error {
	try := func(family, level, opt int, sa unix.Sockaddr) error {
		fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, level, opt, 1); err != nil {
			return fmt.Errorf("setsockopt: %w", err)
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("binding a foreign address: %w", err)
		}
		return nil
	}
	if err := try(unix.AF_INET, unix.SOL_IP, unix.IP_TRANSPARENT, &unix.SockaddrInet4{Addr: [4]byte{192, 0, 2, 1}}); err != nil {
		return fmt.Errorf("IP_TRANSPARENT: %w", err)
	}
	v6 := &unix.SockaddrInet6{Addr: [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}}
	if err := try(unix.AF_INET6, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, v6); err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return fmt.Errorf("IPV6_TRANSPARENT: %w", err)
	}
	return nil
}

// probeTable is the routing table the probe tries; the namespace is thrown
// away with the probe.
const probeTable = 100

// probePolicyRouting adds the rule and route that let replies to a
// transparent dial reach the local stack (fact 5): "from 127.0.0.0/8 iif lo
// table 100" and "local 0.0.0.0/0 dev lo table 100", and the same for IPv6
// where the kernel has it.
func probePolicyRouting() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	for _, fam := range []struct {
		family   int
		src, dst string
	}{
		{unix.AF_INET, "127.0.0.0/8", "0.0.0.0/0"},
		{unix.AF_INET6, "::1/128", "::/0"},
	} {
		_, src, _ := net.ParseCIDR(fam.src)
		_, dst, _ := net.ParseCIDR(fam.dst)
		rule := netlink.NewRule()
		rule.Family = fam.family
		rule.Src = src
		rule.IifName = "lo"
		rule.Table = probeTable
		err := netlink.RuleAdd(rule)
		if err == nil {
			err = netlink.RouteAdd(&netlink.Route{LinkIndex: lo.Attrs().Index, Dst: dst, Table: probeTable,
				Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST})
		}
		if err != nil {
			if fam.family == unix.AF_INET6 && errors.Is(err, unix.EAFNOSUPPORT) {
				continue // no IPv6 in this kernel
			}
			return fmt.Errorf("adding the %s rule and route: %w", fam.src, err)
		}
	}
	return nil
}

// probeSeccompNotify installs a seccomp filter with a user-notification
// listener (SECCOMP_FILTER_FLAG_NEW_LISTENER) after PR_SET_NO_NEW_PRIVS, as
// an unprivileged process must (fact 6). Both are per thread: it works on a
// locked thread that ends with its goroutine, so the filter goes with it.
func probeSeccompNotify() error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends here
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			done <- fmt.Errorf("setting no_new_privs: %w", err)
			return
		}
		allow := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
		prog := unix.SockFprog{Len: uint16(len(allow)), Filter: &allow[0]}
		fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
			unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&prog)))
		runtime.KeepAlive(allow)
		if errno != 0 {
			done <- fmt.Errorf("installing a filter with a listener: %w", errno)
			return
		}
		unix.Close(int(fd))
		done <- nil
	}()
	return <-done
}
