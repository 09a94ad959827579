package doctor

import (
	"bytes"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/nsbind/nsbind/nsutil"
)

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
			CheckMaxUserns, "sudo sysctl -w user.max_user_namespaces=15000"},
		{"user namespaces used up", nsutil.StepCreate, wrap(syscall.ENOSPC), base,
			CheckMaxUserns, "limit of user namespaces is reached"},
		{"old kernels say EUSERS", nsutil.StepCreate, wrap(syscall.EUSERS), base,
			CheckMaxUserns, "limit of user namespaces is reached"},
		{"no user namespaces in the kernel", nsutil.StepCreate, wrap(syscall.EINVAL), base,
			CheckUserns, "CONFIG_USER_NS"},
		{"Debian's unprivileged_userns_clone", nsutil.StepCreate, wrap(syscall.EPERM), with(func(f *nsutil.HostFacts) { f.UnprivilegedUsernsClone = 0 }),
			CheckUnprivClone, "sudo sysctl -w kernel.unprivileged_userns_clone=1"},
		{"a seccomp filter", nsutil.StepCreate, wrap(syscall.EPERM), with(func(f *nsutil.HostFacts) { f.Seccomp = 2 }),
			CheckSeccomp, "--security-opt seccomp=unconfined"},
		{"root under a seccomp filter, with unprivileged_userns_clone 0", nsutil.StepCreate, wrap(syscall.EPERM),
			with(func(f *nsutil.HostFacts) { f.Seccomp, f.UnprivilegedUsernsClone, f.Privileged = 2, 0, true }),
			CheckSeccomp, "seccomp"},
		{"AppArmor refuses the namespace", nsutil.StepCreate, wrap(syscall.EACCES), with(func(f *nsutil.HostFacts) { f.AppArmorRestrictUserns = 1 }),
			CheckAppArmor, "sudo apparmor_parser -r /etc/apparmor.d/nsbind"},
		{"an unmapped user", nsutil.StepCreate, wrap(syscall.EPERM), with(func(f *nsutil.HostFacts) { f.Unmapped = true }),
			CheckUserns, "unshare --map-root-user"},
		{"refused for another reason", nsutil.StepCreate, wrap(syscall.EPERM), base,
			CheckUserns, "security module"},
		{"AppArmor takes the capabilities", nsutil.StepLoopback, syscall.EPERM, with(func(f *nsutil.HostFacts) { f.AppArmorRestrictUserns = 1 }),
			CheckAppArmor, "/etc/apparmor.d/nsbind"},
		{"no CAP_NET_ADMIN inside", nsutil.StepLoopback, syscall.EPERM, base,
			CheckNetwork, "CAP_NET_ADMIN"},
		{"read-only /proc/sys", nsutil.StepPortSysctl, &os.PathError{Op: "open", Path: "/proc/sys/net", Err: syscall.EROFS}, base,
			CheckNetwork, "systempaths=unconfined"},
		{"kernel before 4.11", nsutil.StepPortSysctl, &os.PathError{Op: "open", Path: "/proc/sys/net", Err: syscall.ENOENT},
			with(func(f *nsutil.HostFacts) { f.Kernel = "4.4.0-210-generic" }), CheckKernel, "Linux 4.11 or later"},
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

// The AppArmor profile doctor prints names the binary, allows user
// namespaces, and doctor fails only while nsbind is refused.
func TestDoctorAppArmor(t *testing.T) {
	f := nsutil.HostFacts{Kernel: "6.8.0-31-generic", MaxUserNamespaces: 15000, UnprivilegedUsernsClone: -1, AppArmorRestrictUserns: 1, PortStart: 1024}
	refused := nsutil.ProbeResult{PIDNamespace: true, Setup: &nsutil.NamespaceError{Step: nsutil.StepLoopback, Err: syscall.EPERM}}
	rep := Checks(f, refused, "/opt/my tools/nsbind")
	if rep.RunWorks {
		t.Fatal("doctor says run works while the helper cannot set up its network")
	}
	var c Check
	for _, x := range rep.Checks {
		if x.Name == CheckAppArmor {
			c = x
		}
	}
	if c.Status != StatusFail || !strings.Contains(c.Fix, "sudo apparmor_parser -r /etc/apparmor.d/nsbind") {
		t.Fatalf("AppArmor check %+v", c)
	}
	for _, want := range []string{"abi <abi/4.0>,", `profile nsbind "/opt/my tools/nsbind" flags=(unconfined) {`, "  userns,"} {
		if !strings.Contains(c.Extra, want+"\n") {
			t.Errorf("profile lacks %q:\n%s", want, c.Extra)
		}
	}
	var out bytes.Buffer
	Print(&out, rep)
	if !strings.Contains(out.String(), "      |   userns,\n") {
		t.Errorf("doctor does not print the profile:\n%s", out.String())
	}
	// With a profile installed the namespaces work: the restriction is
	// only information.
	rep = Checks(f, nsutil.ProbeResult{PIDNamespace: true}, "/usr/local/bin/nsbind")
	if !rep.RunWorks {
		t.Fatalf("doctor fails although everything worked: %+v", rep.Checks)
	}
}

// A feature nsbind can run without is a warning, not a failure.
func TestDoctorWarningsKeepRunWorking(t *testing.T) {
	f := nsutil.HostFacts{Kernel: "5.4.0", MaxUserNamespaces: 15000, UnprivilegedUsernsClone: 0, AppArmorRestrictUserns: -1, PortStart: 1024, Privileged: true}
	p := nsutil.ProbeResult{NoPIDNamespace: syscall.EPERM, Transparent: syscall.EPERM, SeccompNotify: syscall.EINVAL}
	rep := Checks(f, p, "/usr/local/bin/nsbind")
	if !rep.RunWorks {
		t.Fatalf("warnings made run fail: %+v", rep.Checks)
	}
	status := map[string]string{}
	for _, c := range rep.Checks {
		status[c.Name] = c.Status
	}
	for name, want := range map[string]string{
		CheckPIDNamespace: StatusWarn, CheckTransparent: StatusWarn, CheckSeccompNotify: StatusWarn,
		CheckPolicyRouting: StatusOK, CheckUnprivClone: StatusOK,
	} {
		if status[name] != want {
			t.Errorf("%s: %s, want %s", name, status[name], want)
		}
	}
}

// doctor's landlock line: OK with signal scoping, a warning before it or
// without Landlock.
func TestLandlockCheck(t *testing.T) {
	for _, tt := range []struct {
		abi    int
		status string
		want   string
	}{
		{0, StatusWarn, "not available"},
		{4, StatusWarn, "ABI 4 (filesystem rules): no signal scoping"},
		{7, StatusOK, "ABI 7 (filesystem, signal and abstract-socket scoping)"},
	} {
		c := LandlockCheck(tt.abi)
		if c.Name != CheckLandlock || c.Status != tt.status || !strings.HasPrefix(c.Message, tt.want) {
			t.Errorf("ABI %d: %+v, want %s %q", tt.abi, c, tt.status, tt.want)
		}
	}
	if abi := nsutil.LandlockABI(); abi > 0 {
		t.Logf("this kernel: %s", LandlockCheck(abi).Message)
	}
}
