package doctor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nsbind/nsbind/nsutil"
)

// Diagnosis is a known reason why nsbind cannot run on this host, and what
// to do about it. nsbind doctor prints it on the line of its check; nsbind
// run prints the same text in one line when it fails for that reason.
type Diagnosis struct {
	// check is the doctor check that shows the cause.
	check   string
	problem string
	fix     string
	// extra is what the fix needs that does not fit on a line (the
	// AppArmor profile); doctor prints it below the line.
	extra string
}

// String is the diagnosis in one line: the problem, then the fix.
func (d Diagnosis) String() string { return d.problem + "; fix: " + d.fix }

// The names of doctor's checks.
const (
	CheckKernel        = "kernel"
	CheckUserns        = "user namespaces"
	CheckMaxUserns     = "user.max_user_namespaces"
	CheckUnprivClone   = "kernel.unprivileged_userns_clone"
	CheckAppArmor      = "kernel.apparmor_restrict_unprivileged_userns"
	CheckSeccomp       = "seccomp"
	CheckHostPorts     = "net.ipv4.ip_unprivileged_port_start"
	CheckNetwork       = "network setup inside"
	CheckPIDNamespace  = "PID namespace and /proc"
	CheckTransparent   = "IP_TRANSPARENT inside"
	CheckPolicyRouting = "policy routing inside"
	CheckSeccompNotify = "seccomp user notification"
	CheckOutbound      = "outbound connections inside"
	CheckVeth          = "--net=veth"
)

// minKernel is the oldest kernel nsbind works on: ambient capabilities
// (4.3) keep the helper's CAP_NET_ADMIN across its exec, and a per-namespace
// net.ipv4.ip_unprivileged_port_start (4.11) lets the server bind port 80
// without any capability.
var minKernel = [2]int{4, 11}

const sysctlConf = "/etc/sysctl.d/99-nsbind.conf"

func kernelTooOld(f nsutil.HostFacts) Diagnosis {
	return Diagnosis{check: CheckKernel,
		problem: fmt.Sprintf("Linux %s is older than %d.%d, which nsbind needs (ambient capabilities and a per-namespace net.ipv4.ip_unprivileged_port_start)", f.Kernel, minKernel[0], minKernel[1]),
		fix:     fmt.Sprintf("run nsbind on Linux %d.%d or later", minKernel[0], minKernel[1])}
}

// MaxUserNamespacesZero is the diagnosis for user.max_user_namespaces=0.
func MaxUserNamespacesZero() Diagnosis {
	return Diagnosis{check: CheckMaxUserns,
		problem: "user.max_user_namespaces is 0, so nobody may create a user namespace",
		fix:     fmt.Sprintf("sudo sysctl -w user.max_user_namespaces=15000 (and keep it with: echo user.max_user_namespaces=15000 | sudo tee %s)", sysctlConf)}
}

func userNamespacesExhausted(f nsutil.HostFacts) Diagnosis {
	return Diagnosis{check: CheckMaxUserns,
		problem: fmt.Sprintf("the limit of user namespaces is reached (user.max_user_namespaces=%d per user, and at most 32 nested levels)", f.MaxUserNamespaces),
		fix:     fmt.Sprintf("end processes that hold user namespaces, or raise the limit: sudo sysctl -w user.max_user_namespaces=%d", max(15000, 2*f.MaxUserNamespaces))}
}

func unprivilegedCloneOff() Diagnosis {
	return Diagnosis{check: CheckUnprivClone,
		problem: "kernel.unprivileged_userns_clone is 0, so only root may create user namespaces",
		fix:     fmt.Sprintf("sudo sysctl -w kernel.unprivileged_userns_clone=1 (and keep it with: echo kernel.unprivileged_userns_clone=1 | sudo tee %s)", sysctlConf)}
}

// appArmorProfilePath is where the AppArmor profile for nsbind goes.
const appArmorProfilePath = "/etc/apparmor.d/nsbind"

func appArmorRestricts(exe string) Diagnosis {
	return Diagnosis{check: CheckAppArmor,
		problem: "kernel.apparmor_restrict_unprivileged_userns is 1: AppArmor gives a program without a profile that allows \"userns,\" no capabilities in its user namespace",
		fix: fmt.Sprintf("install the AppArmor profile for %s as %s (nsbind doctor prints it) and load it with: sudo apparmor_parser -r %s",
			exe, appArmorProfilePath, appArmorProfilePath),
		extra: appArmorProfile(exe)}
}

// appArmorProfile is the profile that lets the nsbind binary at exe create
// user namespaces with capabilities inside, as Ubuntu ships for other
// programs that need them. It attaches by path: a binary moved elsewhere
// needs the profile again.
func appArmorProfile(exe string) string {
	return fmt.Sprintf(`# %s: lets nsbind create user namespaces where
# kernel.apparmor_restrict_unprivileged_userns=1. Load with:
#   sudo apparmor_parser -r %s
abi <abi/4.0>,
include <tunables/global>

profile nsbind %q flags=(unconfined) {
  userns,

  include if exists <local/nsbind>
}
`, appArmorProfilePath, appArmorProfilePath, exe)
}

// SeccompForbids is the diagnosis for a seccomp filter (a container's)
// that refuses new user namespaces.
func SeccompForbids() Diagnosis {
	return Diagnosis{check: CheckSeccomp,
		problem: "a seccomp filter on nsbind (Seccomp: 2 in /proc/self/status, as a container's default seccomp profile installs) forbids creating user namespaces",
		fix:     "run nsbind outside the container, or give the container a seccomp profile that allows clone/unshare with CLONE_NEWUSER (docker or podman run --security-opt seccomp=unconfined, or a custom profile)"}
}

func noNamespaceSupport() Diagnosis {
	return Diagnosis{check: CheckUserns,
		problem: "this kernel has no user or network namespaces",
		fix:     "run nsbind on a kernel built with CONFIG_USER_NS=y and CONFIG_NET_NS=y"}
}

// UnmappedUser is the diagnosis for a user whose ids are not mapped in
// the user namespace nsbind runs in.
func UnmappedUser() Diagnosis {
	return Diagnosis{check: CheckUserns,
		problem: "your uid or gid is not mapped in the user namespace nsbind runs in ('id' shows 65534, nobody), and the kernel lets no unmapped user create a user namespace",
		fix:     "run nsbind where your ids are mapped: outside this namespace, or in one made with a map (unshare --map-root-user or --map-current-user)"}
}

func namespaceRefused() Diagnosis {
	return Diagnosis{check: CheckUserns,
		problem: "the kernel refused to create a user namespace or to write its uid/gid map",
		fix:     "see that no security module (AppArmor, SELinux) or policy forbids user namespaces to your user"}
}

func netAdminDenied() Diagnosis {
	return Diagnosis{check: CheckNetwork,
		problem: "the helper may not configure its own network namespace: a security module (AppArmor, SELinux) denies it CAP_NET_ADMIN there",
		fix:     "allow nsbind user namespaces with capabilities in that security module's policy"}
}

// ProcSysReadOnly is the diagnosis for a read-only /proc/sys, where the
// helper cannot set its namespace's port sysctl.
func ProcSysReadOnly() Diagnosis {
	return Diagnosis{check: CheckNetwork,
		problem: "/proc/sys is read-only here (as in a container), so the helper cannot set net.ipv4.ip_unprivileged_port_start of its own namespace",
		fix:     "run nsbind outside the container, or give the container a writable /proc/sys (docker run --security-opt systempaths=unconfined)"}
}

func unknownFailure(err error) Diagnosis {
	return Diagnosis{check: CheckUserns, problem: err.Error(), fix: "see the lines of nsbind doctor"}
}

// diagnose finds the cause of ne, a namespace step the host refused, from
// its errno and the host facts f. exe is nsbind's binary, for the AppArmor
// profile.
func diagnose(ne *nsutil.NamespaceError, f nsutil.HostFacts, exe string) Diagnosis {
	denied := errors.Is(ne.Err, syscall.EPERM) || errors.Is(ne.Err, syscall.EACCES)
	appArmor := f.AppArmorRestrictUserns == 1 && !f.Privileged
	switch ne.Step {
	case nsutil.StepCreate:
		switch {
		case f.MaxUserNamespaces == 0:
			return MaxUserNamespacesZero()
		case errors.Is(ne.Err, syscall.ENOSPC), errors.Is(ne.Err, syscall.EUSERS):
			return userNamespacesExhausted(f)
		case errors.Is(ne.Err, syscall.EINVAL):
			return noNamespaceSupport()
		case !denied:
			return unknownFailure(ne.Err)
		case f.Unmapped:
			return UnmappedUser()
		case f.UnprivilegedUsernsClone == 0 && !f.Privileged:
			return unprivilegedCloneOff()
		case f.Seccomp == 2:
			return SeccompForbids()
		case appArmor:
			return appArmorRestricts(exe)
		}
		return namespaceRefused()
	case nsutil.StepLoopback:
		switch {
		case denied && appArmor:
			return appArmorRestricts(exe)
		case denied:
			return netAdminDenied()
		}
	case nsutil.StepPortSysctl:
		switch {
		case errors.Is(ne.Err, syscall.ENOENT) && !f.KernelAtLeast(minKernel[0], minKernel[1]):
			return kernelTooOld(f)
		case denied && appArmor:
			return appArmorRestricts(exe)
		case denied, errors.Is(ne.Err, syscall.EROFS):
			return ProcSysReadOnly()
		}
	}
	d := unknownFailure(ne.Err)
	d.check = CheckNetwork
	return d
}

// namespaceLine is the one line that says which step failed, how, why and
// what to do; doctor and run print it alike.
func namespaceLine(ne *nsutil.NamespaceError, d Diagnosis) string {
	how := ne.Err.Error()
	var errno syscall.Errno
	if errors.As(ne.Err, &errno) {
		how = errno.Error()
	}
	return fmt.Sprintf("%s (%s): %s", ne.Step, how, d)
}

// Describe is the line nsbind run prints for an error of the host refusing
// nsbind's namespaces (an *nsutil.NamespaceError in err's chain): the
// diagnosis doctor gives, in one line, pointing to doctor. ok is false for
// any other error.
func Describe(err error) (line string, ok bool) {
	var ne *nsutil.NamespaceError
	if !errors.As(err, &ne) {
		return "", false
	}
	d := diagnose(ne, nsutil.ReadHostFacts(), SelfPath())
	return namespaceLine(ne, d) + "; run 'nsbind doctor' to check everything nsbind needs", true
}

// SelfPath is the nsbind binary, with symbolic links resolved, as an
// AppArmor profile must name it.
func SelfPath() string {
	exe, err := os.Executable()
	if err != nil {
		return "/usr/local/bin/nsbind"
	}
	if p, err := filepath.EvalSymlinks(exe); err == nil {
		exe = p
	}
	return strings.TrimSuffix(exe, " (deleted)")
}
