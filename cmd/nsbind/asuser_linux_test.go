package main

import (
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// testUser is the unprivileged user that root tests run nsbind as, with a
// copy of the test binary and a directory that user can use.
type testUser struct {
	cred *syscall.Credential
	bin  string
	dir  string
}

// asTestUser prepares running nsbind as the unprivileged test user
// (NSBIND_TEST_USER, default nsbind-test, which scripts/test.sh creates).
// Only root can switch users: the test skips otherwise.
func asTestUser(t *testing.T) *testUser {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root for the setup (the namespaces of a remote client); scripts/test.sh runs it as root")
	}
	uid, gid, _ := lookupTestUser(t)
	return newTestUser(t, uid, gid, "nsbind-e2e-")
}

// lookupTestUser is the unprivileged test user's uid and gid; without the
// user the test skips (fails under scripts/test.sh, which creates it).
func lookupTestUser(t *testing.T) (uid, gid int, name string) {
	t.Helper()
	name = testUserName()
	u, err := user.Lookup(name)
	if err != nil {
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatalf("test user %s: %v (scripts/test.sh creates it)", name, err)
		}
		t.Skipf("no test user %s: %v", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, name
}

// newTestUser is the user uid:gid with a copy of the test binary it may
// run (the go tool builds the test binary in a directory only root can
// read) and a work directory it owns, in a new directory named prefix...,
// removed when the test ends.
func newTestUser(t *testing.T, uid, gid int, prefix string) *testUser {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "nsbind.test")
	if err := copyFile(os.Args[0], bin, 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "work")
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, uid, gid); err != nil {
		t.Fatal(err)
	}
	return &testUser{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, bin: bin, dir: work}
}

// prepare makes cmd, a command of the test binary, run as the user: the
// user's copy of the binary, its credentials, its work directory.
func (u *testUser) prepare(cmd *exec.Cmd) {
	cmd.Path, cmd.Args[0] = u.bin, u.bin
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	cmd.Dir = u.dir
}

// command is the program name with args run as the user in its work
// directory.
func (u *testUser) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.cred}
	cmd.Dir = u.dir
	return cmd
}

func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// netnsHost is "another machine" for a test: a network namespace made by
// newTestNetns, where the test runs programs.
type netnsHost struct {
	name string
}

// command runs name with args inside the namespace.
func (h netnsHost) command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.name, name}, args...)...)
}

// start starts name with args inside the namespace as startProcess does:
// killed when the test ends, and, unless ready is "", waited for until its
// output holds ready.
func (h netnsHost) start(t *testing.T, ready, name string, args ...string) *lockedBuffer {
	t.Helper()
	return startProcess(t, filepath.Base(name)+" in the remote host", h.command(name, args...), ready)
}

// remoteHost is a network namespace made by the test, joined to the host
// by a veth pair, with documentation addresses: the host side has
// 198.51.100.129/25 and 2001:db8:4::1/64, the remote side .130 and ::130.
type remoteHost struct {
	netnsHost
}

// Addresses of the remote host and of the host on the veth pair.
const (
	remote4, remote6 = "198.51.100.130", "2001:db8:4::130"
	hostVeth4        = "198.51.100.129"
	hostVeth6        = "2001:db8:4::1"
)

// newRemoteHost creates the namespace and the veth pair; both are removed
// when the test ends. It needs root and the ip tool.
func newRemoteHost(t *testing.T) *remoteHost {
	t.Helper()
	name, _ := newTestNetns(t, "nsbt", hostVeth4, remote4, hostVeth6, remote6, false)
	return &remoteHost{netnsHost{name}}
}

// newTestNetns makes "another machine" for a test: a network namespace
// named prefix+pid, joined to the host by a veth pair (host side NAME+"h",
// remote side NAME+"r") with host4/25 and host6/64 on the host side and
// remote4, remote6 on the other, lo up, and default routes back via the
// host. With forwarding, the host side forwards what it receives
// (net.ipv4.conf.IF.forwarding, net.ipv6.conf.IF.force_forwarding): the
// test's own interface, gone with it. The host side gets no link-local
// IPv6 address, so the host's address list changes only by what the test
// adds. Everything is removed when the test ends. It needs root and ip.
func newTestNetns(t *testing.T, prefix, host4, remote4, host6, remote6 string, forwarding bool) (name, hostSide string) {
	t.Helper()
	ip := needProgram(t, "ip")
	name = prefix + strconv.Itoa(os.Getpid()%100000)
	hostSide, remoteSide := name+"h", name+"r"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	removeStaleTestNetns(ip, prefix)
	run("netns", "add", name)
	t.Cleanup(func() {
		exec.Command(ip, "netns", "del", name).Run()
		exec.Command(ip, "link", "del", hostSide).Run()
	})
	run("link", "add", hostSide, "type", "veth", "peer", "name", remoteSide, "netns", name)
	run("link", "set", hostSide, "addrgenmode", "none")
	if forwarding {
		for _, kv := range []string{"ipv4/conf/" + hostSide + "/forwarding", "ipv6/conf/" + hostSide + "/force_forwarding"} {
			if err := os.WriteFile("/proc/sys/net/"+kv, []byte("1"), 0); err != nil {
				t.Fatalf("letting the test's own veth forward: %v", err)
			}
		}
	}
	run("addr", "add", host4+"/25", "dev", hostSide)
	run("-6", "addr", "add", host6+"/64", "dev", hostSide, "nodad")
	run("link", "set", hostSide, "up")
	run("-n", name, "link", "set", "lo", "up")
	run("-n", name, "addr", "add", remote4+"/25", "dev", remoteSide)
	run("-n", name, "-6", "addr", "add", remote6+"/64", "dev", remoteSide, "nodad")
	run("-n", name, "link", "set", remoteSide, "up")
	run("-n", name, "route", "add", "default", "via", host4)
	run("-n", name, "-6", "route", "add", "default", "via", host6)
	return name, hostSide
}

// removeStaleTestNetns deletes the namespaces of prefix, and their veths,
// that a test process killed before its cleanup left behind: their
// addresses on the host would take the routes of this run's.
func removeStaleTestNetns(ip, prefix string) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	live := make(map[int]bool)
	if procs, err := os.ReadDir("/proc"); err == nil {
		for _, p := range procs {
			if pid, err := strconv.Atoi(p.Name()); err == nil {
				live[pid%100000] = true
			}
		}
	}
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimPrefix(e.Name(), prefix))
		if !strings.HasPrefix(e.Name(), prefix) || err != nil || live[n] {
			continue
		}
		exec.Command(ip, "netns", "del", e.Name()).Run()
		exec.Command(ip, "link", "del", e.Name()+"h").Run()
	}
}
