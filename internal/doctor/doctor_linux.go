package doctor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/nsbind/nsbind/internal/parent"
	"github.com/nsbind/nsbind/nsutil"
)

// The states of a doctor check. Only a failed check stops nsbind run; a
// warning is a feature nsbind runs without.
const (
	StatusOK   = "ok"
	StatusFail = "fail"
	StatusWarn = "warn"
	StatusInfo = "info"
	StatusSkip = "skip"
)

// Check is one line of nsbind doctor.
type Check struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// Extra is what the fix needs beyond one line (the AppArmor profile).
	Extra string `json:"extra,omitempty"`
}

// Report is nsbind doctor's whole answer, as --json prints it.
type Report struct {
	// RunWorks is true when nsbind run will work here (no check failed).
	RunWorks bool    `json:"run_works"`
	Checks   []Check `json:"checks"`
}

// Run checks this host: it reads its facts, starts the probe (nsbind
// itself as nsutil.RoleProbe) in fresh namespaces exactly as run starts its
// helper, and adds what --root would map.
func Run() Report {
	exe := SelfPath()
	facts := nsutil.ReadHostFacts()
	probe := nsutil.Probe(nsutil.ProbeConfig{
		Path:   exe,
		Args:   []string{nsutil.RoleProbe},
		Env:    os.Environ(),
		Stderr: os.Stderr,
		Logger: slog.New(slog.DiscardHandler),
	})
	rep := Checks(facts, probe, exe)
	rep.Checks = append(rep.Checks, IDRangesCheck(parent.PlanIDs(true, "")))
	return rep
}

// Print writes rep as nsbind doctor prints it: a line per check (its
// status, name, message and fix), the lines of an Extra below it, and the
// verdict.
func Print(w io.Writer, rep Report) {
	for _, c := range rep.Checks {
		line := c.Message
		if c.Fix != "" {
			line += "; fix: " + c.Fix
		}
		fmt.Fprintf(w, "%-4s  %s: %s\n", strings.ToUpper(c.Status), c.Name, line)
		if c.Extra != "" {
			for _, l := range strings.Split(strings.TrimRight(c.Extra, "\n"), "\n") {
				fmt.Fprintf(w, "      | %s\n", l)
			}
		}
	}
	if rep.RunWorks {
		fmt.Fprintln(w, "nsbind run will work here.")
	} else {
		fmt.Fprintln(w, "nsbind run will not work here: fix the FAIL lines above.")
	}
}

// Checks turns the host facts f and the probe p into doctor's lines. A
// failure is described by the same diagnose that nsbind run uses (Describe);
// exe is nsbind's binary, for the AppArmor profile.
func Checks(f nsutil.HostFacts, p nsutil.ProbeResult, exe string) Report {
	var checks []Check
	add := func(c Check) { checks = append(checks, c) }
	fail := func(d Diagnosis, message string) Check {
		if message == "" {
			message = d.problem
		}
		return Check{Name: d.check, Status: StatusFail, Message: message, Fix: d.fix, Extra: d.extra}
	}
	created := p.Create == nil
	inside := created && p.Report == nil
	setupOK := inside && p.Setup == nil
	// What the namespace probe failed with: creating, or setting up.
	var refused *nsutil.NamespaceError
	switch {
	case !created:
		if !errors.As(p.Create, &refused) {
			refused = &nsutil.NamespaceError{Step: nsutil.StepCreate, Err: p.Create}
		}
	case inside && p.Setup != nil:
		if !errors.As(p.Setup, &refused) {
			refused = &nsutil.NamespaceError{Step: nsutil.StepLoopback, Err: p.Setup}
		}
	}

	// The kernel.
	kernel := "Linux " + f.Kernel
	if f.KernelAtLeast(minKernel[0], minKernel[1]) {
		add(Check{Name: CheckKernel, Status: StatusOK, Message: kernel})
	} else {
		add(fail(kernelTooOld(f), ""))
	}

	// Creating the namespaces, exactly as run does.
	switch {
	case !created:
		d := diagnose(refused, f, exe)
		add(Check{Name: CheckUserns, Status: StatusFail, Message: namespaceLine(refused, d)})
	default:
		what := "user + network + PID + mount"
		if !p.PIDNamespace {
			what = "user + network"
		}
		add(Check{Name: CheckUserns, Status: StatusOK, Message: fmt.Sprintf("created %s namespaces as uid %d, mapped to itself", what, os.Getuid())})
	}

	// The sysctls that forbid them.
	switch n := f.MaxUserNamespaces; {
	case n < 0:
		add(Check{Name: CheckMaxUserns, Status: StatusOK, Message: "not on this kernel (no limit)"})
	case n == 0:
		add(fail(MaxUserNamespacesZero(), ""))
	case !created && errors.Is(p.Create, syscall.ENOSPC):
		add(fail(userNamespacesExhausted(f), ""))
	default:
		add(Check{Name: CheckMaxUserns, Status: StatusOK, Message: fmt.Sprint(n)})
	}
	switch n := f.UnprivilegedUsernsClone; {
	case n < 0:
		add(Check{Name: CheckUnprivClone, Status: StatusOK, Message: "not on this kernel (no such restriction)"})
	case n == 0 && !f.Privileged:
		add(fail(unprivilegedCloneOff(), ""))
	case n == 0:
		add(Check{Name: CheckUnprivClone, Status: StatusOK, Message: "0, which does not apply to root"})
	default:
		add(Check{Name: CheckUnprivClone, Status: StatusOK, Message: fmt.Sprint(n)})
	}
	switch n := f.AppArmorRestrictUserns; {
	case n < 0:
		add(Check{Name: CheckAppArmor, Status: StatusOK, Message: "not on this kernel (no AppArmor restriction)"})
	case n == 1 && f.Privileged:
		add(Check{Name: CheckAppArmor, Status: StatusOK, Message: "1, which does not apply to root"})
	case n == 1 && (!setupOK || refused != nil):
		add(fail(appArmorRestricts(exe), ""))
	case n == 1:
		add(Check{Name: CheckAppArmor, Status: StatusOK, Message: "1, but a profile lets nsbind use user namespaces"})
	default:
		add(Check{Name: CheckAppArmor, Status: StatusOK, Message: fmt.Sprint(n)})
	}

	// A seccomp filter, as containers have.
	switch {
	case f.Seccomp <= 0:
		add(Check{Name: CheckSeccomp, Status: StatusOK, Message: "no seccomp filter"})
	case !created && (errors.Is(p.Create, syscall.EPERM) || errors.Is(p.Create, syscall.EACCES)):
		add(fail(SeccompForbids(), ""))
	case created:
		add(Check{Name: CheckSeccomp, Status: StatusOK, Message: "a seccomp filter is on, but it lets nsbind create its namespaces"})
	default:
		add(Check{Name: CheckSeccomp, Status: StatusInfo, Message: "a seccomp filter is on; the namespaces failed for another reason"})
	}

	// The host ports the user may publish.
	switch {
	case f.PortStart < 0:
		add(Check{Name: CheckHostPorts, Status: StatusInfo, Message: "not on this kernel: host ports below 1024 need root"})
	case f.Privileged:
		add(Check{Name: CheckHostPorts, Status: StatusInfo, Message: fmt.Sprintf("%d, but root may publish any host port", f.PortStart)})
	case f.PortStart == 0:
		add(Check{Name: CheckHostPorts, Status: StatusInfo, Message: "0: you may publish any host port"})
	default:
		add(Check{Name: CheckHostPorts, Status: StatusInfo, Message: fmt.Sprintf(
			"%d: you may publish host ports %d and above (-p 80:8080 publishes the server's port 80 on host port 8080); for lower ones: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80",
			f.PortStart, f.PortStart)})
	}

	// Inside the namespaces.
	skipped := func(name string) Check {
		why := "not checked: the namespaces could not be created"
		if created && !inside {
			why = "not checked: " + p.Report.Error()
		} else if inside && !setupOK {
			why = "not checked: the network setup failed"
		}
		return Check{Name: name, Status: StatusSkip, Message: why}
	}
	switch {
	case !inside:
		c := skipped(CheckNetwork)
		if created {
			c.Status = StatusFail // the probe itself failed: run would too
		}
		add(c)
	case setupOK:
		add(Check{Name: CheckNetwork, Status: StatusOK, Message: "lo up and net.ipv4.ip_unprivileged_port_start=0 inside: the server may bind any port without privilege"})
	default:
		d := diagnose(refused, f, exe)
		add(Check{Name: CheckNetwork, Status: StatusFail, Message: namespaceLine(refused, d)})
	}
	switch {
	case !inside:
		add(skipped(CheckPIDNamespace))
	case !p.PIDNamespace:
		add(Check{Name: CheckPIDNamespace, Status: StatusWarn, Message: fmt.Sprintf(
			"the kernel refused a PID and mount namespace (%v): nsbind runs without one, so the server sees the host's processes", p.NoPIDNamespace)})
	case p.ProcMount != nil:
		add(Check{Name: CheckPIDNamespace, Status: StatusWarn, Message: fmt.Sprintf(
			"a PID namespace, but mounting its /proc failed (%v): the server sees the host's /proc", p.ProcMount)})
	default:
		add(Check{Name: CheckPIDNamespace, Status: StatusOK, Message: "the helper is init of its own PID namespace, with its own /proc"})
	}
	optional := func(name string, err error, ok, without string) {
		switch {
		case !setupOK:
			add(skipped(name))
		case err != nil:
			add(Check{Name: name, Status: StatusWarn, Message: fmt.Sprintf("not available (%v): %s", err, without)})
		default:
			add(Check{Name: name, Status: StatusOK, Message: ok})
		}
	}
	optional(CheckTransparent, p.Transparent, "a socket inside may bind a foreign address",
		"the server cannot be shown the client's real address")
	optional(CheckPolicyRouting, p.PolicyRouting, "the rule and route that bring replies to transparent sockets back can be added",
		"the server cannot be shown the client's real address")
	switch {
	case !inside:
		add(skipped(CheckSeccompNotify))
	case p.SeccompNotify != nil:
		add(Check{Name: CheckSeccompNotify, Status: StatusWarn, Message: fmt.Sprintf(
			"not available (%v): the server's sockets cannot be swapped for host sockets at bind, so nsbind relays every published port (the native path, the default, needs it)", p.SeccompNotify)})
	case !f.KernelAtLeast(5, 9):
		add(Check{Name: CheckSeccompNotify, Status: StatusWarn, Message: "a listener can be installed, but Linux before 5.9 cannot add descriptors to the server (SECCOMP_IOCTL_NOTIF_ADDFD)"})
	default:
		add(Check{Name: CheckSeccompNotify, Status: StatusOK, Message: "a filter with a listener can be installed after no_new_privs: the server gets the published TCP host sockets at bind (the native path, the default)"})
	}

	optional(CheckOutbound, p.Outbound, "nftables with nat, NFQUEUE and TPROXY: programs inside can reach out through host sockets",
		"programs inside cannot reach out (the run goes on isolated); published ports work")
	if p.Veth != nil {
		add(Check{Name: CheckVeth, Status: StatusInfo, Message: fmt.Sprintf(
			"not available (%v): the default relay needs no privilege", p.Veth)})
	} else {
		add(Check{Name: CheckVeth, Status: StatusOK, Message: "available: this process may create a veth pair and an owned nftables table on the host"})
	}

	add(LandlockCheck(nsutil.LandlockABI()))

	rep := Report{RunWorks: true, Checks: checks}
	for _, c := range checks {
		if c.Status == StatusFail {
			rep.RunWorks = false
		}
	}
	return rep
}

// CheckLandlock is doctor's line on Landlock, the second layer of
// --confine and what scopes every server's signals.
const CheckLandlock = "landlock"

// LandlockCheck is the line for a kernel with Landlock ABI abi (0: none).
func LandlockCheck(abi int) Check {
	switch {
	case abi == 0:
		return Check{Name: CheckLandlock, Status: StatusWarn, Message: "not available (not built in, or not in the lsm= list at boot): --confine confines by the mount namespace alone, and the server can signal the helper"}
	case abi < 6:
		return Check{Name: CheckLandlock, Status: StatusWarn, Message: fmt.Sprintf("ABI %d (filesystem rules): no signal scoping (ABI 6, Linux 6.12), so the server can signal the helper", abi)}
	}
	return Check{Name: CheckLandlock, Status: StatusOK, Message: fmt.Sprintf("ABI %d (filesystem, signal and abstract-socket scoping)", abi)}
}

// CheckIDRanges is doctor's line on what --root maps here.
const CheckIDRanges = "--root id ranges"

// IDRangesCheck says what --root maps for the user the server would run
// as (parent.PlanIDs with --root): the subordinate ranges, or the note on
// why a server that drops privileges will fail, or that root must name
// the user. It never fails the report: run works without ranges.
func IDRangesCheck(ids parent.IDs, err error) Check {
	c := Check{Name: CheckIDRanges, Status: StatusInfo}
	p := ids.Plan
	switch {
	case err != nil:
		c.Message = err.Error()
	case p.Note != "":
		c.Status = StatusWarn
		c.Message = p.Note
	default:
		who := ids.Name
		if who == "" {
			who = fmt.Sprintf("uid %d", p.HostUID)
		}
		var uids, gids []string
		for _, e := range p.UIDMap[1:] {
			uids = append(uids, mapRange(e))
		}
		for _, e := range p.GIDMap[1:] {
			gids = append(gids, mapRange(e))
		}
		by := "written by nsbind"
		if !p.Direct() {
			by = "written by " + p.NewUIDMap + " and " + p.NewGIDMap
		}
		c.Message = fmt.Sprintf("uid and gid 0 inside are %s (%d:%d on the host); uids %s, gids %s (%s): servers that start as root and drop to a worker user work, and their files are owned by those host ids",
			who, p.HostUID, p.HostGID, strings.Join(uids, ", "), strings.Join(gids, ", "), by)
	}
	return c
}

// mapRange is one map line as "inside → host" ranges.
func mapRange(e nsutil.IDMapEntry) string {
	return fmt.Sprintf("%d-%d → %d-%d", e.Inside, e.Inside+e.Count-1, e.Host, e.Host+e.Count-1)
}
