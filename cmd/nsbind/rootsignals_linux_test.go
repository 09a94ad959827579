package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsbind/nsbind/nsutil"
)

// A server started with --root that changes to another uid inside (nginx's
// www-data, dnsmasq's nobody) still gets nsbind's signals: SIGTERM to
// nsbind, nsbind stop and, once it went to the background, the signals to
// every process of the run; and nothing of it outlives the run. The helper
// is uid 0 inside, the server's processes are not: kill(2) needs CAP_KILL
// in the run's user namespace then.

// workerUID is the uid inside the servers below change to (www-data's).
const workerUID = 33

// rootWithRange returns the flags of an nsbind run with --root and a
// subordinate range, so that uids other than 0 exist inside, and a prepare
// function for startNsbindIn: as an unprivileged user its own ranges
// (through newuidmap), as root --user with the test user's ranges.
func rootWithRange(t *testing.T) ([]string, func(*exec.Cmd)) {
	t.Helper()
	if os.Getuid() != 0 {
		needSubIDs(t)
		return []string{"--root"}, nil
	}
	requireUserns(t)
	uid, gid, name := lookupTestUser(t)
	uids, _ := nsutil.ReadSubIDs(nsutil.SubUIDFile, name, uid)
	gids, _ := nsutil.ReadSubIDs(nsutil.SubGIDFile, name, gid)
	if len(uids) == 0 || len(gids) == 0 {
		msg := fmt.Sprintf("the test user %s has no range in /etc/subuid and /etc/subgid", name)
		if os.Getenv("NSBIND_TEST_REQUIRE_USERNS") == "1" {
			t.Fatal(msg + " (scripts/test.sh gives it one)")
		}
		t.Skip(msg)
	}
	return []string{"--root", "--user", name}, withEnv(sudoVars)
}

// startRootRun starts nsbind run with rootWithRange's flags, then args.
func startRootRun(t *testing.T, args ...string) *nsbindRun {
	t.Helper()
	flags, prepare := rootWithRange(t)
	return startNsbindIn(t, t.TempDir(), prepare, append(flags, args...)...)
}

// asWorker is the command line that runs command as workerUID inside, as
// a server that starts as root and drops privileges does.
func asWorker(t *testing.T, command ...string) []string {
	t.Helper()
	setpriv := needProgram(t, "setpriv")
	id := strconv.Itoa(workerUID)
	return append([]string{setpriv, "--reuid=" + id, "--regid=" + id, "--clear-groups"}, command...)
}

// hostUID is the host uid of uid inside the user namespace of pid, from
// /proc/PID/uid_map as the test (on the host) reads it.
func hostUID(t *testing.T, pid, uid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var inside, host, count int
		if _, err := fmt.Sscan(line, &inside, &host, &count); err == nil && uid >= inside && uid < inside+count {
			return host + uid - inside
		}
	}
	t.Fatalf("uid %d is not mapped in process %d:\n%s", uid, pid, b)
	return -1
}

// isWorker fails t unless pid runs as workerUID inside (real and
// effective): the server did change its uid.
func isWorker(t *testing.T, pid int) {
	t.Helper()
	want := strconv.Itoa(hostUID(t, pid, workerUID))
	if got := strings.Fields(statusField(t, pid, "Uid")); got[0] != want || got[1] != want {
		t.Fatalf("process %d Uid %v on the host, want %s (uid %d inside)", pid, got, want, workerUID)
	}
}

// gone fails t if any of pids still runs once nsbind has exited.
func gone(t *testing.T, pids ...int) {
	t.Helper()
	for _, p := range pids {
		if alive(p) {
			t.Errorf("process %d of the run still runs after nsbind exited", p)
		}
	}
}

// promptly bounds how long a run may take to end once its server got the
// signal: each server below ends at once on it.
const promptly = 10 * time.Second

// stopsOnSIGTERM sends r's nsbind SIGTERM and checks that the run ends
// with want, the status of the process of uid 33 that printed "got
// SIGTERM", and that the other such process, pid, is gone with it.
func stopsOnSIGTERM(t *testing.T, r *nsbindRun, want, pid int) {
	t.Helper()
	if code := r.stop(promptly); code != want {
		t.Fatalf("exit %d after SIGTERM, want %d", code, want)
	}
	if !strings.Contains(r.stdout.String(), "got SIGTERM") {
		t.Fatalf("the process of uid 33 did not get SIGTERM:\n%s", r.stdout.String())
	}
	gone(t, pid)
}

func TestRootServerOfAnotherUIDGetsSignals(t *testing.T) {
	t.Run("SIGTERM to nsbind", func(t *testing.T) {
		// The server catches SIGTERM and exits 7; its child, another
		// process of uid 33, goes with the run.
		r := startRootRun(t, append([]string{"--"}, asWorker(t, "sh", "-c",
			`trap 'echo got SIGTERM; exit 7' TERM; echo ready; sleep 60 >/dev/null & wait`)...)...)
		r.waitOutput("ready")
		sleep := processNamed(t, r.cmd.Process.Pid, "sleep")
		isWorker(t, sleep)
		stopsOnSIGTERM(t, r, 7, sleep)
	})
	t.Run("nsbind stop", func(t *testing.T) {
		name := instanceName("rootstop")
		r := startRootRun(t, append([]string{"--name", name, "--"}, asWorker(t, "sleep", "60")...)...)
		// setpriv execs sleep after it changed the uid.
		sleep := processNamed(t, r.cmd.Process.Pid, "sleep")
		isWorker(t, sleep)
		start := time.Now()
		if code, stdout, stderr := runNsbind(t, "stop", "--timeout", promptly.String(), name); code != 0 {
			t.Fatalf("nsbind stop %s: exit %d\n%s%s", name, code, stdout, stderr)
		}
		// A server that does not catch SIGTERM dies of it: 128+15.
		if code := r.wait(promptly); code != 128+int(syscall.SIGTERM) {
			t.Fatalf("exit %d after nsbind stop, want %d", code, 128+int(syscall.SIGTERM))
		}
		if d := time.Since(start); d > promptly/2 {
			t.Errorf("the run took %v to end after nsbind stop", d)
		}
		gone(t, sleep)
	})
	t.Run("in the background", func(t *testing.T) {
		// The command exits 0 leaving a shell of uid 33 that exits 9 on
		// SIGTERM, after it killed and reaped its child, which ignores
		// SIGTERM: the shell is the last process and its 9 the status.
		inner := `(trap '' TERM; exec sleep 60 >/dev/null) & trap 'kill -KILL $!; wait; echo got SIGTERM; exit 9' TERM; echo ready; wait`
		r := startRootRun(t, append([]string{"--"}, asWorker(t, "sh", "-c", `sh -c "$0" & exit 0`, inner)...)...)
		r.waitStderr(backgroundLine)
		r.waitOutput("ready")
		sleep := processNamed(t, r.cmd.Process.Pid, "sleep")
		isWorker(t, sleep)
		stopsOnSIGTERM(t, r, 9, sleep)
	})
	t.Run("dnsmasq", func(t *testing.T) {
		// dnsmasq as root inside drops to nobody and, without -k, goes
		// to the background; on SIGTERM it exits 0.
		dnsmasq := needProgram(t, "dnsmasq")
		dig := needProgram(t, "dig")
		name := instanceName("rootdns")
		r := startRootRun(t, "--name", name, "-p", "53:0/udp", "--", dnsmasq, "--conf-file=/dev/null",
			"--port=53", "--pid-file", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1",
			"--address=/test.example/192.0.2.1")
		r.waitStderr(backgroundLine)
		out, err := exec.Command(dig, "+short", "+time=2", "+tries=3", "@127.0.0.1", "-p",
			strconv.Itoa(int(r.addr(4).Port())), "test.example").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "192.0.2.1" {
			t.Fatalf("dig: %v %q", err, out)
		}
		server := processNamed(t, r.cmd.Process.Pid, "dnsmasq")
		nobody := strconv.Itoa(hostUID(t, server, 65534))
		if got := strings.Fields(statusField(t, server, "Uid")); got[1] != nobody {
			t.Fatalf("dnsmasq Uid %v on the host, want nobody's %s", got, nobody)
		}
		if code, stdout, stderr := runNsbind(t, "stop", "--timeout", promptly.String(), name); code != 0 {
			t.Fatalf("nsbind stop %s: exit %d\n%s%s", name, code, stdout, stderr)
		}
		if code := r.wait(promptly); code != 0 {
			t.Fatalf("exit %d after nsbind stop, want dnsmasq's 0", code)
		}
		gone(t, server)
	})
}

// withoutPIDNamespace makes cmd, an nsbind run as root, run where the
// kernel refuses it a PID namespace: as root of a user namespace with every
// id mapped to itself (nsbind is host root there) whose
// max_pid_namespaces is 0. The helper is then a child subreaper, and
// signals and kills the run's processes one by one.
func withoutPIDNamespace(cmd *exec.Cmd) {
	withEnv(sudoVars)(cmd)
	all := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}
	cmd.Args = append([]string{"sh", "-c", `echo 0 >/proc/sys/user/max_pid_namespaces && exec "$0" "$@"`, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = "/bin/sh"
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER,
		UidMappings: all, GidMappings: all, GidMappingsEnableSetgroups: true}
}

// noPIDNamespaceLine is the line that says the helper runs without a PID
// namespace (--log-level debug).
const noPIDNamespaceLine = "no PID namespace: running without one"

func TestRootServerOfAnotherUIDWithoutPIDNamespace(t *testing.T) {
	needHostRoot(t)
	flags, _ := rootWithRange(t)
	flags = append([]string{"--log-level", "debug"}, flags...)
	t.Run("what a failing command left", func(t *testing.T) {
		// Without a PID namespace nothing but the helper's kill ends the
		// background process of uid 33 when the command fails.
		r := startNsbindIn(t, t.TempDir(), withoutPIDNamespace, append(flags, append([]string{"--"},
			asWorker(t, "sh", "-c", `sleep 1000 >/dev/null 2>&1 & echo "left $!"; exit 3`)...)...)...)
		if code := r.wait(promptly); code != 3 {
			t.Fatalf("exit %d, want the command's 3", code)
		}
		if !strings.Contains(r.stderr.String(), noPIDNamespaceLine) {
			t.Fatalf("the run had a PID namespace:\n%s", r.stderr.String())
		}
		var left int
		if _, err := fmt.Sscanf(r.stdout.String(), "left %d", &left); err != nil {
			t.Fatalf("no pid of the background process in %q", r.stdout.String())
		}
		gone(t, left)
		if t.Failed() {
			syscall.Kill(left, syscall.SIGKILL)
		}
	})
	t.Run("in the background", func(t *testing.T) {
		inner := `(trap '' TERM; exec sleep 60 >/dev/null) & trap 'kill -KILL $!; wait; exit 9' TERM; echo ready; wait`
		r := startNsbindIn(t, t.TempDir(), withoutPIDNamespace, append(flags, append([]string{"--"},
			asWorker(t, "sh", "-c", `sh -c "$0" & exit 0`, inner)...)...)...)
		r.waitStderr(backgroundLine)
		if !strings.Contains(r.stderr.String(), noPIDNamespaceLine) {
			t.Fatalf("the run had a PID namespace:\n%s", r.stderr.String())
		}
		r.waitOutput("ready")
		sleep := processNamed(t, r.cmd.Process.Pid, "sleep")
		isWorker(t, sleep)
		// Should the helper fail to end them, no PID namespace takes
		// them with it: end them before the test waits for nsbind's
		// output, which they hold open.
		sh, _ := strconv.Atoi(statusField(t, sleep, "PPid"))
		t.Cleanup(func() {
			if t.Failed() {
				syscall.Kill(sleep, syscall.SIGKILL)
				syscall.Kill(sh, syscall.SIGKILL)
			}
		})
		if code := r.stop(promptly); code != 9 {
			t.Fatalf("exit %d after SIGTERM, want the last process's 9", code)
		}
		gone(t, sleep, sh)
	})
}
