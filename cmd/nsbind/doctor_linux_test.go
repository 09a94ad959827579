package main

import (
	"bytes"
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
	if !strings.Contains(out, "OK    "+checkOutbound+":") {
		t.Errorf("doctor does not report outbound connections as available:\n%s", out)
	}
	if veth := "OK    " + checkVeth + ":"; strings.Contains(out, veth) != (os.Getuid() == 0) {
		t.Errorf("doctor's --net=veth line is wrong for uid %d:\n%s", os.Getuid(), out)
	}
	code, out, _ = runNsbind(t, "doctor", "--json")
	var rep doctorReport
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
	want := maxUserNamespacesZero().String()
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
	var rep doctorReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.RunWorks {
		t.Fatalf("doctor --json: exit %d, %v:\n%s", code, err, out)
	}

	marker := t.TempDir() + "/started"
	code, _, stderr = runCmd(t, inZero("run", "--", "touch", marker))
	if code != 125 {
		t.Fatalf("run: exit %d, want 125; stderr:\n%s", code, stderr)
	}
	// Inside unshare --map-root-user the run's uid is 0, so its instance
	// directory may be /tmp/nsbind-0 of the host's root, which it cannot
	// open: that warning is not the diagnosis and may come before it.
	var lines []string
	for _, l := range strings.SplitAfter(stderr, "\n") {
		if l != "" && !strings.HasPrefix(l, "nsbind: warning: nsbind ps, port, exec, stats and stop will not find this run") {
			lines = append(lines, l)
		}
	}
	stderr = strings.Join(lines, "")
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
	want := seccompForbids().String()
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
	line := "setting net.ipv4.ip_unprivileged_port_start to 0 inside (read-only file system): " + procSysReadOnly().String()
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
	want := "creating the namespaces (operation not permitted): " + unmappedUser().String()
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

// Every remedy for a namespace error: the errno and the host facts pick
// the cause.
func TestDiagnose(t *testing.T) {
	base := nsutil.HostFacts{Kernel: "6.1.0", MaxUserNamespaces: 15000, UnprivilegedUsernsClone: -1, AppArmorRestrictUserns: -1, PortStart: 1024}
	with := func(change func(*nsutil.HostFacts)) nsutil.HostFacts {
		f := base
		change(&f)
		return f
	}
	wrap := func(errno syscall.Errno) error { return &os.PathError{Op: "fork/exec", Path: "/nsbind", Err: errno} }
	tests := []struct {
		name  string
		step  string
		err   error
		facts nsutil.HostFacts
		check string
		says  string
	}{
		{"max_user_namespaces is 0", nsutil.StepCreate, wrap(syscall.ENOSPC), with(func(f *nsutil.HostFacts) { f.MaxUserNamespaces = 0 }),
			checkMaxUserns, "sudo sysctl -w user.max_user_namespaces=15000"},
		{"user namespaces used up", nsutil.StepCreate, wrap(syscall.ENOSPC), base,
			checkMaxUserns, "limit of user namespaces is reached"},
		{"old kernels say EUSERS", nsutil.StepCreate, wrap(syscall.EUSERS), base,
			checkMaxUserns, "limit of user namespaces is reached"},
		{"no user namespaces in the kernel", nsutil.StepCreate, wrap(syscall.EINVAL), base,
			checkUserns, "CONFIG_USER_NS"},
		{"Debian's unprivileged_userns_clone", nsutil.StepCreate, wrap(syscall.EPERM), with(func(f *nsutil.HostFacts) { f.UnprivilegedUsernsClone = 0 }),
			checkUnprivClone, "sudo sysctl -w kernel.unprivileged_userns_clone=1"},
		{"a seccomp filter", nsutil.StepCreate, wrap(syscall.EPERM), with(func(f *nsutil.HostFacts) { f.Seccomp = 2 }),
			checkSeccomp, "--security-opt seccomp=unconfined"},
		{"root under a seccomp filter, with unprivileged_userns_clone 0", nsutil.StepCreate, wrap(syscall.EPERM),
			with(func(f *nsutil.HostFacts) { f.Seccomp, f.UnprivilegedUsernsClone, f.Privileged = 2, 0, true }),
			checkSeccomp, "seccomp"},
		{"AppArmor refuses the namespace", nsutil.StepCreate, wrap(syscall.EACCES), with(func(f *nsutil.HostFacts) { f.AppArmorRestrictUserns = 1 }),
			checkAppArmor, "sudo apparmor_parser -r /etc/apparmor.d/nsbind"},
		{"an unmapped user", nsutil.StepCreate, wrap(syscall.EPERM), with(func(f *nsutil.HostFacts) { f.Unmapped = true }),
			checkUserns, "unshare --map-root-user"},
		{"refused for another reason", nsutil.StepCreate, wrap(syscall.EPERM), base,
			checkUserns, "security module"},
		{"AppArmor takes the capabilities", nsutil.StepLoopback, syscall.EPERM, with(func(f *nsutil.HostFacts) { f.AppArmorRestrictUserns = 1 }),
			checkAppArmor, "/etc/apparmor.d/nsbind"},
		{"no CAP_NET_ADMIN inside", nsutil.StepLoopback, syscall.EPERM, base,
			checkNetwork, "CAP_NET_ADMIN"},
		{"read-only /proc/sys", nsutil.StepPortSysctl, &os.PathError{Op: "open", Path: "/proc/sys/net", Err: syscall.EROFS}, base,
			checkNetwork, "systempaths=unconfined"},
		{"kernel before 4.11", nsutil.StepPortSysctl, &os.PathError{Op: "open", Path: "/proc/sys/net", Err: syscall.ENOENT},
			with(func(f *nsutil.HostFacts) { f.Kernel = "4.4.0-210-generic" }), checkKernel, "Linux 4.11 or later"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ne := &nsutil.NamespaceError{Step: tt.step, Err: tt.err}
			d := diagnose(ne, tt.facts, "/usr/local/bin/nsbind")
			if d.check != tt.check || !strings.Contains(d.String(), tt.says) {
				t.Fatalf("diagnose = %q (check %q), want check %q saying %q", d, d.check, tt.check, tt.says)
			}
		})
	}
}

// run's one line for a namespace error is doctor's diagnosis plus a
// pointer to doctor.
func TestDescribeNamespaceError(t *testing.T) {
	err := fmt.Errorf("setting up: %w", &nsutil.NamespaceError{Step: nsutil.StepLoopback, Err: syscall.EPERM})
	got := describe(err)
	if !strings.HasPrefix(got, "bringing lo up (operation not permitted): ") || !strings.HasSuffix(got, "run 'nsbind doctor' to check everything nsbind needs") ||
		strings.Contains(got, "\n") {
		t.Fatalf("describe = %q", got)
	}
}

// The AppArmor profile doctor prints names the binary, allows user
// namespaces, and doctor fails only while nsbind is refused.
func TestDoctorAppArmor(t *testing.T) {
	f := nsutil.HostFacts{Kernel: "6.8.0-31-generic", MaxUserNamespaces: 15000, UnprivilegedUsernsClone: -1, AppArmorRestrictUserns: 1, PortStart: 1024}
	refused := nsutil.ProbeResult{PIDNamespace: true, Setup: &nsutil.NamespaceError{Step: nsutil.StepLoopback, Err: syscall.EPERM}}
	rep := doctorChecks(f, refused, "/opt/my tools/nsbind")
	if rep.RunWorks {
		t.Fatal("doctor says run works while the helper cannot set up its network")
	}
	var c check
	for _, x := range rep.Checks {
		if x.Name == checkAppArmor {
			c = x
		}
	}
	if c.Status != statusFail || !strings.Contains(c.Fix, "sudo apparmor_parser -r /etc/apparmor.d/nsbind") {
		t.Fatalf("AppArmor check %+v", c)
	}
	for _, want := range []string{"abi <abi/4.0>,", `profile nsbind "/opt/my tools/nsbind" flags=(unconfined) {`, "  userns,"} {
		if !strings.Contains(c.Extra, want+"\n") {
			t.Errorf("profile lacks %q:\n%s", want, c.Extra)
		}
	}
	var out bytes.Buffer
	printReport(&out, rep)
	if !strings.Contains(out.String(), "      |   userns,\n") {
		t.Errorf("doctor does not print the profile:\n%s", out.String())
	}
	// With a profile installed the namespaces work: the restriction is
	// only information.
	rep = doctorChecks(f, nsutil.ProbeResult{PIDNamespace: true}, "/usr/local/bin/nsbind")
	if !rep.RunWorks {
		t.Fatalf("doctor fails although everything worked: %+v", rep.Checks)
	}
}

// A feature nsbind can run without is a warning, not a failure.
func TestDoctorWarningsKeepRunWorking(t *testing.T) {
	f := nsutil.HostFacts{Kernel: "5.4.0", MaxUserNamespaces: 15000, UnprivilegedUsernsClone: 0, AppArmorRestrictUserns: -1, PortStart: 1024, Privileged: true}
	p := nsutil.ProbeResult{NoPIDNamespace: syscall.EPERM, Transparent: syscall.EPERM, SeccompNotify: syscall.EINVAL}
	rep := doctorChecks(f, p, "/usr/local/bin/nsbind")
	if !rep.RunWorks {
		t.Fatalf("warnings made run fail: %+v", rep.Checks)
	}
	status := map[string]string{}
	for _, c := range rep.Checks {
		status[c.Name] = c.Status
	}
	for name, want := range map[string]string{
		checkPIDNamespace: statusWarn, checkTransparent: statusWarn, checkSeccompNotify: statusWarn,
		checkPolicyRouting: statusOK, checkUnprivClone: statusOK,
	} {
		if status[name] != want {
			t.Errorf("%s: %s, want %s", name, status[name], want)
		}
	}
}
