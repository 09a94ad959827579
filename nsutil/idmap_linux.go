package nsutil

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// FindNewIDMap returns the paths of newuidmap and newgidmap on PATH, ""
// for one that is missing: the distribution's setuid helpers (Debian's
// package uidmap), which write a map of the subordinate ranges that
// /etc/subuid and /etc/subgid give the caller. They are the one program
// nsbind runs besides the user's command; the binary stays static.
func FindNewIDMap() (newuidmap, newgidmap string) {
	newuidmap, _ = exec.LookPath("newuidmap")
	newgidmap, _ = exec.LookPath("newgidmap")
	return newuidmap, newgidmap
}

// The steps of WriteIDMaps, as IDMapError.Step says them.
const (
	StepUIDMap    = "writing the uid map"
	StepSetgroups = "denying setgroups"
	StepGIDMap    = "writing the gid map"
)

// IDMapError is WriteIDMaps failing at one step. Err keeps the errno (of
// the write, or newuidmap's exit); Output is what newuidmap or newgidmap
// printed, which says why it refused (a range not in /etc/subuid...).
type IDMapError struct {
	Step   string
	Pid    int
	Output string
	Err    error
}

func (e *IDMapError) Error() string {
	s := fmt.Sprintf("%s of process %d: %v", e.Step, e.Pid, e.Err)
	if e.Output != "" {
		s += ": " + e.Output
	}
	return s
}

func (e *IDMapError) Unwrap() error { return e.Err }

// WriteIDMaps gives the child pid the maps of plan. The child must have
// been started with CLONE_NEWUSER and no maps (no UidMappings or
// GidMappings in its SysProcAttr), and must not use its ids until told
// that WriteIDMaps returned: until then its uid and gid are unmapped inside
// (they show as 65534) and setuid, chown and the like fail with EINVAL.
//
// The uid map comes first, then setgroups, then the gid map: the kernel
// takes an unprivileged gid_map only after setgroups is "deny". Through
// newuidmap and newgidmap the helpers do setgroups themselves.
func WriteIDMaps(pid int, plan IDPlan) error {
	if plan.Direct() {
		if err := writeProcFile(pid, "uid_map", mapText(plan.UIDMap)); err != nil {
			return &IDMapError{Step: StepUIDMap, Pid: pid, Err: err}
		}
		if plan.SetgroupsDeny {
			if err := writeProcFile(pid, "setgroups", "deny"); err != nil {
				return &IDMapError{Step: StepSetgroups, Pid: pid, Err: err}
			}
		}
		if err := writeProcFile(pid, "gid_map", mapText(plan.GIDMap)); err != nil {
			return &IDMapError{Step: StepGIDMap, Pid: pid, Err: err}
		}
		return nil
	}
	if err := runNewIDMap(plan.NewUIDMap, pid, plan.UIDMap); err != nil {
		err.Step = StepUIDMap
		return err
	}
	if plan.SetgroupsDeny {
		if err := writeProcFile(pid, "setgroups", "deny"); err != nil {
			return &IDMapError{Step: StepSetgroups, Pid: pid, Err: err}
		}
	}
	if err := runNewIDMap(plan.NewGIDMap, pid, plan.GIDMap); err != nil {
		err.Step = StepGIDMap
		return err
	}
	return nil
}

func mapText(m []IDMapEntry) string {
	var b strings.Builder
	for _, e := range m {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// writeProcFile writes s to /proc/PID/name in one write(2): the kernel
// takes a map only whole, in a single write.
func writeProcFile(pid int, name, s string) error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/"+name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(s))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// runNewIDMap runs "newuidmap PID inside host count..." (or newgidmap).
func runNewIDMap(path string, pid int, m []IDMapEntry) *IDMapError {
	args := []string{strconv.Itoa(pid)}
	for _, e := range m {
		args = append(args, strconv.Itoa(e.Inside), strconv.Itoa(e.Host), strconv.Itoa(e.Count))
	}
	cmd := exec.Command(path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A clean environment: the helper is setuid root and has no need of
	// the user's.
	cmd.Env = []string{}
	if err := cmd.Run(); err != nil {
		return &IDMapError{Pid: pid, Output: strings.TrimSpace(out.String()), Err: fmt.Errorf("%s: %w", path, err)}
	}
	return nil
}

// EnterIDs is run by the child, after WriteIDMaps, when plan.Switch is
// set: it drops the supplementary groups it inherited from host root,
// then becomes plan.GID and plan.UID (real, effective and saved), so that
// it is no longer kernel uid 0. The child needs CAP_SETUID and CAP_SETGID
// in its namespace for that, which after an exec as an unmapped uid it
// has only as ambient capabilities (SysProcAttr.AmbientCaps: Go raises
// them before the exec, and the exec keeps them although the uid is not
// mapped yet). Go's syscall set*id calls change every thread.
//
// The ambient set survives the switch: the kernel clears it at setuid(2)
// only when the old ids held the namespace's root (the host id inside uid
// 0 maps to), and host root's kernel uid 0 is never that in nsbind's maps.
// With --root the new uid is the namespace's root, and the effective set
// becomes the permitted one.
//
// A change of credentials also clears the parent-death signal (Go's
// Pdeathsig) of every thread, and makes the process not dumpable. EnterIDs
// sets pdeathsig again, when it is not 0, on every thread (a static
// build; with cgo, where Go cannot reach every thread, on the calling
// thread only, which is enough while that thread lives: the kernel kills
// the whole process when one of its threads has the signal), and fails
// if the parent has already gone.
func EnterIDs(plan IDPlan, pdeathsig syscall.Signal) error {
	if !plan.Switch {
		return nil
	}
	ppid := os.Getppid()
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("dropping the supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(plan.GID, plan.GID, plan.GID); err != nil {
		return fmt.Errorf("changing to gid %d: %w", plan.GID, err)
	}
	if err := syscall.Setresuid(plan.UID, plan.UID, plan.UID); err != nil {
		return fmt.Errorf("changing to uid %d: %w", plan.UID, err)
	}
	if os.Getuid() != plan.UID || os.Getgid() != plan.GID {
		return errors.New("changing ids: the kernel kept the old ones")
	}
	if pdeathsig == 0 {
		return nil
	}
	_, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(pdeathsig), 0)
	if e == syscall.ENOTSUP {
		_, _, e = syscall.RawSyscall(syscall.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uintptr(pdeathsig), 0)
	}
	if e != 0 {
		return fmt.Errorf("setting the parent-death signal again: %w", e)
	}
	if os.Getppid() != ppid {
		return errors.New("changing ids: the parent exited meanwhile")
	}
	return nil
}
