package nsutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// confineEnv carries a confineSpec to the copy of the test binary that
// runs confineInside in a new user namespace.
const confineEnv = "NSUTIL_TEST_CONFINE"

// confineSpec is one run of confineInside.
type confineSpec struct {
	// Confine: call Confine before the checks, which then must fail where
	// the confinement denies; without it (the control) they must succeed,
	// which proves each check can fail.
	Confine bool
	// Layout "tmp": the home, the runtime directory and the rest lie in a
	// temporary directory the parent made (the process has no mount
	// namespace of its own; Confine makes one). "real": the child, in a
	// mount namespace of its own, puts a home under /home and a runtime
	// directory under /run/user, as on a real machine.
	Layout string
	// HomeIsWorkDir runs the server in the home itself.
	HomeIsWorkDir bool
	Base          string // the parent's temporary directory
	Outside       string // a directory the user may write that stays visible
	Abstract      string // an abstract unix socket the parent listens on
}

// runConfined runs the test t again with spec, in a new user namespace
// as the exec step runs (the user mapped to itself, the helper's ambient
// capabilities), where it calls confineInside, and fails t with the
// child's output if that fails.
func runConfined(t *testing.T, spec confineSpec) {
	t.Helper()
	if raw := os.Getenv(confineEnv); raw != "" {
		var inside confineSpec
		if err := json.Unmarshal([]byte(raw), &inside); err != nil {
			t.Fatal(err)
		}
		confineInside(t, inside)
		return
	}
	spec.Base = t.TempDir()
	outside, err := os.MkdirTemp("/var/tmp", "nsbind-confine-")
	if err != nil {
		t.Skipf("no writable /var/tmp for the write-outside check: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(outside) })
	spec.Outside = outside
	if spec.Layout == "tmp" {
		home := filepath.Join(spec.Base, "home", "alice")
		for _, d := range []string{".ssh", "proj", "Documents"} {
			if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, filepath.Join(home, ".ssh", "id_secret"), "secret")
		if err := os.MkdirAll(filepath.Join(spec.Base, "run", "user", fmt.Sprint(os.Getuid())), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"data", "logs"} {
		if err := os.Mkdir(filepath.Join(spec.Base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(spec.Base, "data", "index.html"), "hello")
	writeFile(t, filepath.Join(spec.Base, "app.log"), "")

	// An abstract socket of a process outside the server's domain.
	spec.Abstract = fmt.Sprintf("@nsbind-confine-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	ln, err := net.Listen("unix", spec.Abstract)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	b, _ := json.Marshal(spec)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), confineEnv+"="+string(b))
	flags := uintptr(syscall.CLONE_NEWUSER)
	if spec.Layout == "real" {
		flags |= syscall.CLONE_NEWNS
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}},
		AmbientCaps: helperCaps(),
		Pdeathsig:   syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "fork/exec") {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("cannot create a user namespace here (NSBIND_TEST_REQUIRE_USERNS=1): %v", err)
		}
		t.Skipf("cannot create a user namespace here: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("inside the namespace: %v\n%s", err, out)
	}
	t.Logf("inside:\n%s", out)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A confined server cannot read the home's secrets, reach the runtime
// directory's sockets, write outside its working directory and /tmp, or
// signal a process outside; it can write where it may and run programs.
func TestConfineTmpLayout(t *testing.T) {
	runConfined(t, confineSpec{Confine: true, Layout: "tmp"})
}

// The same in the layout of a real machine: /home/NAME, other users'
// homes beside it, /run/user/UID, and a process already in a mount
// namespace of its own.
func TestConfineRealLayout(t *testing.T) {
	runConfined(t, confineSpec{Confine: true, Layout: "real"})
}

// Run in the home itself, the server sees the home but not its secrets.
func TestConfineHomeIsWorkDir(t *testing.T) {
	runConfined(t, confineSpec{Confine: true, Layout: "real", HomeIsWorkDir: true})
}

// The control: without Confine every check that the confinement makes
// fail succeeds.
func TestConfineControlTmpLayout(t *testing.T) {
	runConfined(t, confineSpec{Confine: false, Layout: "tmp"})
}

func TestConfineControlRealLayout(t *testing.T) {
	runConfined(t, confineSpec{Confine: false, Layout: "real"})
}

// confineInside is the body of the tests above, in their child.
func confineInside(t *testing.T, spec confineSpec) {
	uid := os.Getuid()
	var home, runtimeDir, otherHome string
	switch spec.Layout {
	case "tmp":
		home = filepath.Join(spec.Base, "home", "alice")
		runtimeDir = filepath.Join(spec.Base, "run", "user", fmt.Sprint(uid))
	case "real":
		// In this process's own mount namespace, so the host's /home and
		// /run/user are untouched.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"/home", "/run/user"} {
			if err := unix.Mount("tmpfs", d, "tmpfs", 0, "mode=0755"); err != nil {
				t.Fatalf("mounting a tmpfs on %s: %v", d, err)
			}
		}
		home = "/home/alice"
		otherHome = "/home/bob"
		runtimeDir = fmt.Sprintf("/run/user/%d", uid)
		for _, d := range []string{home + "/.ssh", home + "/proj", home + "/Documents", otherHome, runtimeDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		writeFile(t, home+"/.ssh/id_secret", "secret")
		writeFile(t, home+"/.netrc", "machine example.org password secret")
		writeFile(t, otherHome+"/notes", "bob's")
	}
	// The agent's socket in the runtime directory, listening.
	agent := filepath.Join(runtimeDir, "agent.sock")
	aln, err := net.Listen("unix", agent)
	if err != nil {
		t.Fatal(err)
	}
	defer aln.Close()

	work := filepath.Join(home, "proj")
	if spec.HomeIsWorkDir {
		work = home
	}
	cfg := ConfineConfig{
		WorkDir:    work,
		Home:       home,
		RuntimeDir: runtimeDir,
		AllowRead:  []string{filepath.Join(spec.Base, "data")},
		AllowWrite: []string{filepath.Join(spec.Base, "logs"), filepath.Join(spec.Base, "app.log")},
	}
	abi := 0
	if spec.Confine {
		if err := CheckConfine(cfg); err != nil {
			t.Fatalf("CheckConfine: %v", err)
		}
		rep, err := Confine(cfg)
		if err != nil {
			t.Fatalf("Confine: %v", err)
		}
		t.Logf("Confine: %+v (kernel ABI %d) note %q", rep, LandlockABI(), rep.Note())
		abi = rep.LandlockABI
		if rep.Scoped != (abi >= 6) {
			t.Errorf("Scoped = %v with ABI %d", rep.Scoped, abi)
		}
		if wd, _ := os.Getwd(); wd != work {
			t.Errorf("working directory %s, want %s", wd, work)
		}
	}
	denied := func(what string, err error, errnos ...syscall.Errno) {
		t.Helper()
		if !spec.Confine {
			if err != nil {
				t.Errorf("control: %s: %v (the check cannot fail)", what, err)
			}
			return
		}
		if err == nil {
			t.Errorf("confined: %s succeeded", what)
			return
		}
		if !slices.ContainsFunc(errnos, func(e syscall.Errno) bool { return errors.Is(err, e) }) {
			t.Errorf("confined: %s: %v, want one of %v", what, err, errnos)
		}
	}
	allowed := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	write := func(path string) error { return os.WriteFile(path, []byte("x"), 0o600) }

	// The home's secrets, other homes, the runtime directory's sockets.
	_, err = os.ReadFile(filepath.Join(home, ".ssh", "id_secret"))
	denied("reading ~/.ssh/id_secret", err, syscall.ENOENT, syscall.EACCES)
	if otherHome != "" {
		_, err = os.ReadFile(filepath.Join(otherHome, "notes"))
		denied("reading another user's home", err, syscall.ENOENT, syscall.EACCES)
	}
	if !spec.HomeIsWorkDir {
		_, err = os.Stat(filepath.Join(home, "Documents"))
		denied("seeing the rest of the home", err, syscall.ENOENT, syscall.EACCES)
	}
	c, err := net.Dial("unix", agent)
	if err == nil {
		c.Close()
	}
	denied("connecting to the runtime directory's socket", err, syscall.ENOENT, syscall.EACCES, syscall.ECONNREFUSED)

	if spec.Layout == "real" {
		// A secret file: hidden with the rest of the home, or, in the
		// bound-back home, covered (it reads empty).
		b, err := os.ReadFile(filepath.Join(home, ".netrc"))
		if spec.Confine && err == nil && len(b) > 0 {
			t.Errorf("confined: ~/.netrc reads %q", b)
		}
		if !spec.Confine && (err != nil || len(b) == 0) {
			t.Errorf("control: reading ~/.netrc: %q, %v (the check cannot fail)", b, err)
		}
	}

	// Writing outside, inside, and in the Allow paths.
	denied("writing outside the working directory", write(filepath.Join(spec.Outside, "f")), syscall.EROFS, syscall.EACCES)
	allowed("writing in the working directory", write(filepath.Join(work, "written")))
	allowed("making a directory in the working directory", os.Mkdir(filepath.Join(work, "sub"), 0o755))
	allowed("renaming into another directory of the working directory",
		os.Rename(filepath.Join(work, "written"), filepath.Join(work, "sub", "moved")))
	inTmp := filepath.Join("/tmp", fmt.Sprintf("nsbind-confine-%d", os.Getpid()))
	allowed("writing in /tmp", write(inTmp))
	os.Remove(inTmp) // the host's /tmp in the control
	b, err := os.ReadFile(filepath.Join(spec.Base, "data", "index.html"))
	allowed("reading an --allow-read path", err)
	if err == nil && string(b) != "hello" {
		t.Errorf("--allow-read file reads %q", b)
	}
	denied("writing in an --allow-read path", write(filepath.Join(spec.Base, "data", "new")), syscall.EROFS, syscall.EACCES)
	allowed("writing in an --allow-write path", write(filepath.Join(spec.Base, "logs", "access.log")))
	allowed("writing an --allow-write file", write(filepath.Join(spec.Base, "app.log")))

	// Programs still run, and in the same view: a program started after
	// Confine (as the server is) cannot read the secret either.
	secret := filepath.Join(home, ".ssh", "id_secret")
	out, err := exec.Command("/bin/sh", "-c", "echo ran; cat "+secret+" 2>/dev/null; true").Output()
	allowed("running /bin/sh", err)
	want := "ran"
	if !spec.Confine {
		want = "ran\nsecret"
	}
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("/bin/sh said %q, want %q", got, want)
	}

	// Signals and abstract sockets outside the domain (Landlock ABI 6).
	if spec.Confine && abi < 6 {
		t.Logf("Landlock ABI %d: no scoping to check", abi)
		return
	}
	denied("kill(parent, 0)", unix.Kill(os.Getppid(), 0), syscall.EPERM)
	c, err = net.Dial("unix", spec.Abstract)
	if err == nil {
		c.Close()
	}
	denied("connecting to an abstract socket outside", err, syscall.EPERM)
}

// CheckConfine names the path that does not exist, before anything starts.
func TestCheckConfineMissingPath(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope")
	file := filepath.Join(dir, "file")
	writeFile(t, file, "")
	tests := []struct {
		name string
		cfg  ConfineConfig
		path string // in the message
		is   error
	}{
		{"allow-read missing", ConfineConfig{WorkDir: dir, AllowRead: []string{missing}}, missing, fs.ErrNotExist},
		{"allow-write missing", ConfineConfig{WorkDir: dir, AllowWrite: []string{dir, missing}}, missing, fs.ErrNotExist},
		{"workdir missing", ConfineConfig{WorkDir: missing}, missing, fs.ErrNotExist},
		{"workdir a file", ConfineConfig{WorkDir: file}, file, syscall.ENOTDIR},
		{"workdir the root", ConfineConfig{WorkDir: "/"}, "/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckConfine(tt.cfg)
			var pe *ConfinePathError
			if !errors.As(err, &pe) {
				t.Fatalf("CheckConfine = %v, want a *ConfinePathError", err)
			}
			if pe.Path != tt.path || !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name %s", err, tt.path)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
	ok := ConfineConfig{WorkDir: dir, AllowRead: []string{file}, AllowWrite: []string{dir}, Home: missing, RuntimeDir: missing}
	if err := CheckConfine(ok); err != nil {
		t.Errorf("CheckConfine(%+v) = %v; an absent home or runtime directory hides nothing", ok, err)
	}
}

func TestServerEnvConfined(t *testing.T) {
	env := []string{"PATH=/bin", "HOME=/home/a", "SSH_AUTH_SOCK=/run/user/1/ssh", "DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1/bus",
		"XDG_RUNTIME_DIR=/run/user/1", "DOCKER_HOST=unix:///run/docker.sock", "LANG=C", "SSH_AUTH_SOCKET_NOT=keep"}
	got := ServerEnvConfined(env)
	want := []string{"PATH=/bin", "HOME=/home/a", "LANG=C", "SSH_AUTH_SOCKET_NOT=keep"}
	if !slices.Equal(got, want) {
		t.Errorf("ServerEnvConfined = %q, want %q", got, want)
	}
}

func TestConfineConfigFromEnv(t *testing.T) {
	got := ConfineConfigFromEnv([]string{"HOME=/home/a", "X=1"}, 1000, "/w")
	if got.Home != "/home/a" || got.RuntimeDir != "/run/user/1000" || got.WorkDir != "/w" {
		t.Errorf("without XDG_RUNTIME_DIR: %+v", got)
	}
	got = ConfineConfigFromEnv([]string{"XDG_RUNTIME_DIR=/run/x"}, 1000, "/w")
	if got.RuntimeDir != "/run/x" || got.Home != "" {
		t.Errorf("with XDG_RUNTIME_DIR: %+v", got)
	}
}

func TestUnescapeMount(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/plain`: "/plain", `/x\134`: `/x\`, `/t\011`: "/t\t", `/short\04`: `/short\04`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

// The fallback for kernels without mount_setattr(2): in a user namespace
// each mount copied from the host is remounted read-only on its own, and
// only if the call repeats the flags the host set on it (the kernel locks
// them: MNT_LOCK_NOSUID and the like), which readOnlyMount reads from
// mountinfo.
func TestReadOnlyPerMount(t *testing.T) {
	if os.Getenv(confineEnv) == "" {
		runInside(t, "TestReadOnlyPerMount", syscall.CLONE_NEWUSER|syscall.CLONE_NEWNS)
		return
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	mounts, err := readMountInfo()
	if err != nil {
		t.Fatal(err)
	}
	// A mount with a flag the host set, remounted without it: EPERM.
	for _, m := range mounts {
		if !slices.Contains(strings.Split(m.opts, ","), "nosuid") {
			continue
		}
		err := unix.Mount("", m.point, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
		if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EACCES) {
			continue // not reachable, or (as root of the host's own namespace...) allowed
		}
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("remounting %s without its nosuid: %v, want EPERM", m.point, err)
		}
		t.Logf("remounting %s (%s) read-only without its locked flags: %v", m.point, m.opts, err)
		break
	}
	for _, m := range mounts {
		if err := readOnlyMount(m.point, m.opts); err != nil {
			t.Errorf("readOnlyMount(%s, %s): %v", m.point, m.opts, err)
		}
	}
	after, err := readMountInfo()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range after {
		var st unix.Statfs_t
		if err := unix.Statfs(m.point, &st); err != nil {
			continue
		}
		if st.Flags&unix.ST_RDONLY == 0 {
			t.Errorf("%s is still writable (%s)", m.point, m.opts)
		}
	}
	if err := os.WriteFile(filepath.Join(os.TempDir(), "nsbind-permount"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		t.Errorf("writing in %s after: %v, want EROFS", os.TempDir(), err)
	}
}

// runInside runs the test named test of this binary in new namespaces of
// flags, with the helper's ambient capabilities.
func runInside(t *testing.T, test string, flags uintptr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), confineEnv+"={}")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  flags,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getuid(), HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getgid(), HostID: os.Getgid(), Size: 1}},
		AmbientCaps: helperCaps(),
		Pdeathsig:   syscall.SIGKILL,
	}
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(err.Error(), "fork/exec") {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("cannot create a user namespace here (NSBIND_TEST_REQUIRE_USERNS=1): %v", err)
		}
		t.Skipf("cannot create a user namespace here: %v", err)
	}
	if err != nil || !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s inside the namespaces: %v\n%s", test, err, out)
	}
	t.Logf("inside:\n%s", out)
}
