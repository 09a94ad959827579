package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nsbind/nsbind/internal/doctor"
	"github.com/nsbind/nsbind/internal/hints"
	"github.com/nsbind/nsbind/nsutil"
)

// Acceptance 1: nsbind doctor passes on this machine, as root and as the
// unprivileged user, with one line per check, and --json says the same.
func TestDoctorPasses(t *testing.T) {
	code, out, stderr := runNsbind(t, "doctor")
	if code != 0 {
		t.Fatalf("exit %d; stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 17 || lines[16] != "nsbind run will work here." {
		t.Fatalf("want 16 checks and the verdict, got:\n%s", out)
	}
	for _, l := range lines[:16] {
		switch status, _, _ := strings.Cut(l, " "); status {
		case "OK", "INFO":
		case "WARN":
			t.Logf("an optional feature is missing here: %s", l)
		default:
			t.Errorf("a check did not pass although run works: %q", l)
		}
	}
	// Outbound connections work here, and --net=veth exactly when root.
	if !strings.Contains(out, "OK    "+doctor.CheckOutbound+":") {
		t.Errorf("doctor does not report outbound connections as available:\n%s", out)
	}
	if veth := "OK    " + doctor.CheckVeth + ":"; strings.Contains(out, veth) != (os.Getuid() == 0) {
		t.Errorf("doctor's --net=veth line is wrong for uid %d:\n%s", os.Getuid(), out)
	}
	code, out, _ = runNsbind(t, "doctor", "--json")
	var rep doctor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if code != 0 || !rep.RunWorks || len(rep.Checks) != 16 {
		t.Fatalf("--json: exit %d, %+v", code, rep)
	}
}

// Acceptance 2: in a user namespace whose user.max_user_namespaces is 0,
// doctor exits 1 naming the sysctl and the fix, and run exits 125 with the
// same diagnosis, pointing to doctor.
func TestMaxUserNamespacesZero(t *testing.T) {
	unshare := needProgram(t, "unshare")
	requireUserns(t)
	inZero := func(args ...string) *exec.Cmd {
		script := `echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" "$@"`
		return exec.Command(unshare, append([]string{"--user", "--map-root-user", "sh", "-c", script, os.Args[0], "__nsbind"}, args...)...)
	}
	want := doctor.MaxUserNamespacesZero().String()
	code, out, stderr := runCmd(t, inZero("doctor"))
	if code != 1 {
		t.Fatalf("doctor: exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, line := range []string{
		"FAIL  user.max_user_namespaces: " + want,
		"FAIL  user namespaces: creating the namespaces (no space left on device): " + want,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("doctor does not say %q:\n%s", line, out)
		}
	}
	if !strings.Contains(want, "sudo sysctl -w user.max_user_namespaces=") {
		t.Errorf("the diagnosis gives no fix: %q", want)
	}
	code, out, _ = runCmd(t, inZero("doctor", "--json"))
	var rep doctor.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.RunWorks {
		t.Fatalf("doctor --json: exit %d, %v:\n%s", code, err, out)
	}

	marker := t.TempDir() + "/started"
	code, _, stderr = runCmd(t, inZero("run", "--", "touch", marker))
	if code != 125 {
		t.Fatalf("run: exit %d, want 125; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, want) || !strings.Contains(stderr, "nsbind doctor") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("run does not give doctor's diagnosis in one line:\n%s", stderr)
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the command ran")
	}
}

// Acceptance 3: under a seccomp filter that makes creating a user
// namespace fail with EPERM (as a container's default profile does),
// doctor and run name the seccomp policy as the cause.
func TestSeccompForbidsUserns(t *testing.T) {
	requireUserns(t)
	underFilter := func(args ...string) *exec.Cmd {
		return exec.Command(os.Args[0], append([]string{"__seccomp_no_userns", os.Args[0], "__nsbind"}, args...)...)
	}
	want := doctor.SeccompForbids().String()
	code, out, stderr := runCmd(t, underFilter("doctor"))
	if !strings.Contains(stderr, filterChecked) {
		t.Fatalf("the filter does not work as the test needs:\n%s", stderr)
	}
	if code != 1 {
		t.Fatalf("doctor: exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, stderr)
	}
	for _, line := range []string{
		"FAIL  seccomp: " + want,
		// EPERM from clone(2): Go did not use clone3 (ENOSYS here).
		"FAIL  user namespaces: creating the namespaces (operation not permitted): " + want,
	} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("doctor does not say %q:\n%s", line, out)
		}
	}
	marker := t.TempDir() + "/started"
	code, _, stderr = runCmd(t, underFilter("run", "--", "touch", marker))
	if code != 125 {
		t.Fatalf("run: exit %d, want 125; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "creating the namespaces (operation not permitted): "+want) || !strings.Contains(stderr, "nsbind doctor") {
		t.Errorf("run does not give doctor's diagnosis:\n%s", stderr)
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the command ran")
	}
}

// In a container whose /proc/sys is read-only (made here, without root,
// in a user and mount namespace), the helper cannot set its namespace's
// port sysctl: run fails from inside the helper with 125 and the same
// diagnosis as doctor's network line.
func TestReadOnlyProcSys(t *testing.T) {
	unshare := needProgram(t, "unshare")
	needProgram(t, "mount")
	requireUserns(t)
	readOnly := func(args ...string) *exec.Cmd {
		script := `mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && exec "$0" "$@"`
		// Root needs no user namespace to mount (and nsbind, as host
		// root, runs the server as the sudo user, whom a
		// --map-root-user namespace would not map).
		userns := []string{"--user", "--map-root-user"}
		if os.Getuid() == 0 {
			userns = nil
		}
		return exec.Command(unshare, append(append(userns, "--mount", "sh", "-c", script, os.Args[0], "__nsbind"), args...)...)
	}
	line := "setting net.ipv4.ip_unprivileged_port_start to 0 inside (read-only file system): " + doctor.ProcSysReadOnly().String()
	code, out, stderr := runCmd(t, readOnly("doctor"))
	if code != 1 || !strings.Contains(out, "FAIL  network setup inside: "+line+"\n") {
		t.Fatalf("doctor: exit %d, want 1 and %q; stdout:\n%s\nstderr:\n%s", code, line, out, stderr)
	}
	marker := t.TempDir() + "/started"
	code, _, stderr = runCmd(t, readOnly("run", "--", "touch", marker))
	if code != 125 || !strings.Contains(stderr, line) || !strings.Contains(stderr, "nsbind doctor") {
		t.Fatalf("run: exit %d, want 125 and %q; stderr:\n%s", code, line, stderr)
	}
	if _, err := os.Stat(marker); !errors.Is(err, fs.ErrNotExist) {
		t.Error("the command ran")
	}
}

// A user whose uid is not mapped where nsbind runs (inside "unshare -U"
// without a map, it is nobody) may create no user namespace: run says so.
func TestUnmappedUser(t *testing.T) {
	unshare := needProgram(t, "unshare")
	requireUserns(t)
	code, _, stderr := runCmd(t, exec.Command(unshare, "--user", os.Args[0], "__nsbind", "run", "--", "true"))
	want := "creating the namespaces (operation not permitted): " + doctor.UnmappedUser().String()
	if code != 125 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, want 125 and %q; stderr:\n%s", code, want, stderr)
	}
}

// filterChecked is what seccompNoUserns prints once it has checked its
// filter.
const filterChecked = "seccomp filter: clone3 gives ENOSYS, unshare(CLONE_NEWUSER) EPERM, plain children start"

// seccompNoUserns ("__seccomp_no_userns PROGRAM ARGS...") installs a
// seccomp filter as a container runtime's default profile does: clone(2)
// and unshare(2) with CLONE_NEWUSER fail with EPERM, and clone3(2), whose
// flags sit in memory a classic-BPF filter cannot read, fails with ENOSYS
// so that callers fall back to clone(2). It checks the filter, then execs
// PROGRAM, which keeps it.
func seccompNoUserns(args []string) int {
	runtime.LockOSThread()
	if err := installNoUsernsFilter(); err != nil {
		fmt.Fprintf(os.Stderr, "installing the seccomp filter: %v\n", err)
		return 99
	}
	if _, _, errno := unix.Syscall(unix.SYS_CLONE3, 0, 0, 0); errno != unix.ENOSYS {
		fmt.Fprintf(os.Stderr, "clone3 gave %v, want ENOSYS\n", errno)
		return 99
	}
	// Without the filter this is EINVAL (a threaded process may not
	// unshare its user namespace): EPERM comes from the filter.
	if err := unix.Unshare(unix.CLONE_NEWUSER); !errors.Is(err, unix.EPERM) {
		fmt.Fprintf(os.Stderr, "unshare(CLONE_NEWUSER) gave %v, want EPERM\n", err)
		return 99
	}
	// Go starts children with clone(2) (clone3 only for cgroup
	// descriptors and time namespaces), so ENOSYS from clone3 costs it
	// nothing.
	if err := exec.Command("/bin/true").Run(); err != nil {
		fmt.Fprintf(os.Stderr, "starting a plain child under the filter: %v\n", err)
		return 99
	}
	fmt.Fprintln(os.Stderr, filterChecked)
	err := syscall.Exec(args[0], args, os.Environ())
	fmt.Fprintf(os.Stderr, "exec %s: %v\n", args[0], err)
	return 99
}

func installNoUsernsFilter() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("no filter for %s", runtime.GOARCH)
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		// Offsets in struct seccomp_data.
		offNr, offArch, offArg0 = 0, 4, 16 // arg0's low half, little-endian
	)
	prog := []unix.SockFilter{
		/* 0 */ {Code: ld, K: offArch},
		/* 1 */ {Code: jeq, K: arch, Jt: 0, Jf: 7}, // another ABI: 9
		/* 2 */ {Code: ld, K: offNr},
		/* 3 */ {Code: jeq, K: unix.SYS_CLONE3, Jt: 7}, // 11
		/* 4 */ {Code: jeq, K: unix.SYS_UNSHARE, Jt: 2}, // 7
		/* 5 */ {Code: jeq, K: unix.SYS_CLONE, Jt: 1}, // 7
		/* 6 */ {Code: ret, K: unix.SECCOMP_RET_ALLOW},
		/* 7 */ {Code: ld, K: offArg0},
		/* 8 */ {Code: jset, K: unix.CLONE_NEWUSER, Jt: 1}, // 10
		/* 9 */ {Code: ret, K: unix.SECCOMP_RET_ALLOW},
		/* 10 */ {Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		/* 11 */ {Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return errno
	}
	return nil
}

// run's one line for a namespace error is doctor's diagnosis plus a
// pointer to doctor.
func TestDescribeNamespaceError(t *testing.T) {
	err := fmt.Errorf("setting up: %w", &nsutil.NamespaceError{Step: nsutil.StepLoopback, Err: syscall.EPERM})
	got := hints.Describe(err)
	if !strings.HasPrefix(got, "bringing lo up (operation not permitted): ") || !strings.HasSuffix(got, "run 'nsbind doctor' to check everything nsbind needs") ||
		strings.Contains(got, "\n") {
		t.Fatalf("describe = %q", got)
	}
}
