package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/nsbind/nsbind/internal/parent"
	"github.com/nsbind/nsbind/nsutil"
)

// The states of a doctor check. Only a failed check stops nsbind run; a
// warning is a feature nsbind runs without.
const (
	statusOK   = "ok"
	statusFail = "fail"
	statusWarn = "warn"
	statusInfo = "info"
	statusSkip = "skip"
)

// check is one line of nsbind doctor.
type check struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
	// Extra is what the fix needs beyond one line (the AppArmor profile).
	Extra string `json:"extra,omitempty"`
}

// doctorReport is nsbind doctor's whole answer, as --json prints it.
type doctorReport struct {
	// RunWorks is true when nsbind run will work here (no check failed).
	RunWorks bool    `json:"run_works"`
	Checks   []check `json:"checks"`
}

// doctorLong is nsbind doctor's description in its help and the man page.
const doctorLong = `Checks that this host lets nsbind run work, the way run will use it: it creates
a user and network namespace (and a PID and mount namespace) and tries inside
what the helper and the server need. One line per check: OK, or the problem
and the exact fix. Exit status 0 when run will work, 1 when it will not.`

// doctorOptions are nsbind doctor's flags.
type doctorOptions struct {
	json bool
}

// doctorCommand is "nsbind doctor ARGS...", as the command line has it.
func doctorCommand(args []string, stdout, stderr io.Writer) int {
	return run(append([]string{"doctor"}, args...), stdout, stderr)
}

// doctorFlags are the flags of nsbind doctor, set into o as they are
// parsed (by its cobra command, cli.go).
func doctorFlags(o *doctorOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("nsbind doctor", pflag.ContinueOnError)
	fs.BoolVar(&o.json, "json", false, "print the checks as one JSON object, for scripts")
	return fs
}

// doctorParsed runs the checks and prints them.
func doctorParsed(o doctorOptions, stdout io.Writer) int {
	exe := selfPath()
	facts := nsutil.ReadHostFacts()
	probe := nsutil.Probe(nsutil.ProbeConfig{
		Path:   exe,
		Args:   []string{nsutil.RoleProbe},
		Env:    os.Environ(),
		Stderr: os.Stderr,
		Logger: slog.New(slog.DiscardHandler),
	})
	rep := doctorChecks(facts, probe, exe)
	rep.Checks = append(rep.Checks, idRangesCheck(parent.PlanIDs(true, "")))
	if o.json {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		printReport(stdout, rep)
	}
	if !rep.RunWorks {
		return 1
	}
	return 0
}

// probeMain is the probe (argv[0] nsutil.RoleProbe): nsbind doctor starts it in fresh namespaces,
// exactly as run starts its helper, and it reports what works inside.
func probeMain() int {
	ctrl, err := nsutil.NewCtrl(os.NewFile(nsutil.CtrlFD, "ctrl"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "nsbind: %v\n", err)
		return exitFailed
	}
	if err := nsutil.ProbeInside(ctrl); err != nil {
		fmt.Fprintf(os.Stderr, "nsbind: reporting the probe: %v\n", err)
		return exitFailed
	}
	return 0
}

func printReport(w io.Writer, rep doctorReport) {
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

// doctorChecks turns the host facts and the probe into doctor's lines. A
// failure is described by the same diagnose that nsbind run uses.
func doctorChecks(f nsutil.HostFacts, p nsutil.ProbeResult, exe string) doctorReport {
	var checks []check
	add := func(c check) { checks = append(checks, c) }
	fail := func(d diagnosis, message string) check {
		if message == "" {
			message = d.problem
		}
		return check{Name: d.check, Status: statusFail, Message: message, Fix: d.fix, Extra: d.extra}
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
		add(check{Name: checkKernel, Status: statusOK, Message: kernel})
	} else {
		add(fail(kernelTooOld(f), ""))
	}

	// Creating the namespaces, exactly as run does.
	switch {
	case !created:
		d := diagnose(refused, f, exe)
		add(check{Name: checkUserns, Status: statusFail, Message: namespaceLine(refused, d)})
	default:
		what := "user + network + PID + mount"
		if !p.PIDNamespace {
			what = "user + network"
		}
		add(check{Name: checkUserns, Status: statusOK, Message: fmt.Sprintf("created %s namespaces as uid %d, mapped to itself", what, os.Getuid())})
	}

	// The sysctls that forbid them.
	switch n := f.MaxUserNamespaces; {
	case n < 0:
		add(check{Name: checkMaxUserns, Status: statusOK, Message: "not on this kernel (no limit)"})
	case n == 0:
		add(fail(maxUserNamespacesZero(), ""))
	case !created && errors.Is(p.Create, syscall.ENOSPC):
		add(fail(userNamespacesExhausted(f), ""))
	default:
		add(check{Name: checkMaxUserns, Status: statusOK, Message: fmt.Sprint(n)})
	}
	switch n := f.UnprivilegedUsernsClone; {
	case n < 0:
		add(check{Name: checkUnprivClone, Status: statusOK, Message: "not on this kernel (no such restriction)"})
	case n == 0 && !f.Privileged:
		add(fail(unprivilegedCloneOff(), ""))
	case n == 0:
		add(check{Name: checkUnprivClone, Status: statusOK, Message: "0, which does not apply to root"})
	default:
		add(check{Name: checkUnprivClone, Status: statusOK, Message: fmt.Sprint(n)})
	}
	switch n := f.AppArmorRestrictUserns; {
	case n < 0:
		add(check{Name: checkAppArmor, Status: statusOK, Message: "not on this kernel (no AppArmor restriction)"})
	case n == 1 && f.Privileged:
		add(check{Name: checkAppArmor, Status: statusOK, Message: "1, which does not apply to root"})
	case n == 1 && (!setupOK || refused != nil):
		add(fail(appArmorRestricts(exe), ""))
	case n == 1:
		add(check{Name: checkAppArmor, Status: statusOK, Message: "1, but a profile lets nsbind use user namespaces"})
	default:
		add(check{Name: checkAppArmor, Status: statusOK, Message: fmt.Sprint(n)})
	}

	// A seccomp filter, as containers have.
	switch {
	case f.Seccomp <= 0:
		add(check{Name: checkSeccomp, Status: statusOK, Message: "no seccomp filter"})
	case !created && (errors.Is(p.Create, syscall.EPERM) || errors.Is(p.Create, syscall.EACCES)):
		add(fail(seccompForbids(), ""))
	case created:
		add(check{Name: checkSeccomp, Status: statusOK, Message: "a seccomp filter is on, but it lets nsbind create its namespaces"})
	default:
		add(check{Name: checkSeccomp, Status: statusInfo, Message: "a seccomp filter is on; the namespaces failed for another reason"})
	}

	// The host ports the user may publish.
	switch {
	case f.PortStart < 0:
		add(check{Name: checkHostPorts, Status: statusInfo, Message: "not on this kernel: host ports below 1024 need root"})
	case f.Privileged:
		add(check{Name: checkHostPorts, Status: statusInfo, Message: fmt.Sprintf("%d, but root may publish any host port", f.PortStart)})
	case f.PortStart == 0:
		add(check{Name: checkHostPorts, Status: statusInfo, Message: "0: you may publish any host port"})
	default:
		add(check{Name: checkHostPorts, Status: statusInfo, Message: fmt.Sprintf(
			"%d: you may publish host ports %d and above (-p 80:8080 publishes the server's port 80 on host port 8080); for lower ones: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80",
			f.PortStart, f.PortStart)})
	}

	// Inside the namespaces.
	skipped := func(name string) check {
		why := "not checked: the namespaces could not be created"
		if created && !inside {
			why = "not checked: " + p.Report.Error()
		} else if inside && !setupOK {
			why = "not checked: the network setup failed"
		}
		return check{Name: name, Status: statusSkip, Message: why}
	}
	switch {
	case !inside:
		c := skipped(checkNetwork)
		if created {
			c.Status = statusFail // the probe itself failed: run would too
		}
		add(c)
	case setupOK:
		add(check{Name: checkNetwork, Status: statusOK, Message: "lo up and net.ipv4.ip_unprivileged_port_start=0 inside: the server may bind any port without privilege"})
	default:
		d := diagnose(refused, f, exe)
		add(check{Name: checkNetwork, Status: statusFail, Message: namespaceLine(refused, d)})
	}
	switch {
	case !inside:
		add(skipped(checkPIDNamespace))
	case !p.PIDNamespace:
		add(check{Name: checkPIDNamespace, Status: statusWarn, Message: fmt.Sprintf(
			"the kernel refused a PID and mount namespace (%v): nsbind runs without one, so the server sees the host's processes", p.NoPIDNamespace)})
	case p.ProcMount != nil:
		add(check{Name: checkPIDNamespace, Status: statusWarn, Message: fmt.Sprintf(
			"a PID namespace, but mounting its /proc failed (%v): the server sees the host's /proc", p.ProcMount)})
	default:
		add(check{Name: checkPIDNamespace, Status: statusOK, Message: "the helper is init of its own PID namespace, with its own /proc"})
	}
	optional := func(name string, err error, ok, without string) {
		switch {
		case !setupOK:
			add(skipped(name))
		case err != nil:
			add(check{Name: name, Status: statusWarn, Message: fmt.Sprintf("not available (%v): %s", err, without)})
		default:
			add(check{Name: name, Status: statusOK, Message: ok})
		}
	}
	optional(checkTransparent, p.Transparent, "a socket inside may bind a foreign address",
		"the server cannot be shown the client's real address")
	optional(checkPolicyRouting, p.PolicyRouting, "the rule and route that bring replies to transparent sockets back can be added",
		"the server cannot be shown the client's real address")
	switch {
	case !inside:
		add(skipped(checkSeccompNotify))
	case p.SeccompNotify != nil:
		add(check{Name: checkSeccompNotify, Status: statusWarn, Message: fmt.Sprintf(
			"not available (%v): the server's sockets cannot be swapped for host sockets at bind, so nsbind relays every published port (the native path, the default, needs it)", p.SeccompNotify)})
	case !f.KernelAtLeast(5, 9):
		add(check{Name: checkSeccompNotify, Status: statusWarn, Message: "a listener can be installed, but Linux before 5.9 cannot add descriptors to the server (SECCOMP_IOCTL_NOTIF_ADDFD)"})
	default:
		add(check{Name: checkSeccompNotify, Status: statusOK, Message: "a filter with a listener can be installed after no_new_privs: the server gets the published TCP host sockets at bind (the native path, the default)"})
	}

	optional(checkOutbound, p.Outbound, "nftables with nat, NFQUEUE and TPROXY: programs inside can reach out through host sockets",
		"programs inside cannot reach out (the run goes on isolated); published ports work")
	if p.Veth != nil {
		add(check{Name: checkVeth, Status: statusInfo, Message: fmt.Sprintf(
			"not available (%v): the default relay needs no privilege", p.Veth)})
	} else {
		add(check{Name: checkVeth, Status: statusOK, Message: "available: this process may create a veth pair and an owned nftables table on the host"})
	}

	add(landlockCheck(nsutil.LandlockABI()))

	rep := doctorReport{RunWorks: true, Checks: checks}
	for _, c := range checks {
		if c.Status == statusFail {
			rep.RunWorks = false
		}
	}
	return rep
}

// checkLandlock is doctor's line on Landlock, the second layer of
// --confine and what scopes every server's signals.
const checkLandlock = "landlock"

// landlockCheck is the line for a kernel with Landlock ABI abi (0: none).
func landlockCheck(abi int) check {
	switch {
	case abi == 0:
		return check{Name: checkLandlock, Status: statusWarn, Message: "not available (not built in, or not in the lsm= list at boot): --confine confines by the mount namespace alone, and the server can signal the helper"}
	case abi < 6:
		return check{Name: checkLandlock, Status: statusWarn, Message: fmt.Sprintf("ABI %d (filesystem rules): no signal scoping (ABI 6, Linux 6.12), so the server can signal the helper", abi)}
	}
	return check{Name: checkLandlock, Status: statusOK, Message: fmt.Sprintf("ABI %d (filesystem, signal and abstract-socket scoping)", abi)}
}

// checkIDRanges is doctor's line on what --root maps here.
const checkIDRanges = "--root id ranges"

// idRangesCheck says what --root maps for the user the server would run
// as (parent.PlanIDs with --root): the subordinate ranges, or the note on
// why a server that drops privileges will fail, or that root must name
// the user. It never fails the report: run works without ranges.
func idRangesCheck(ids parent.IDs, err error) check {
	c := check{Name: checkIDRanges, Status: statusInfo}
	p := ids.Plan
	switch {
	case err != nil:
		c.Message = err.Error()
	case p.Note != "":
		c.Status = statusWarn
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
